"""A failed model call is not a result: how it is told apart, named and reported.

Two things can go wrong when a judge is asked: its *answer* cannot be read
(a result: the reply is unscorable, with the parser's reason), or the *call*
failed (the server was down, refused the model name, answered 5xx after the
retries, or ran out of time). The second says nothing about the reply, so no
runner writes it as final: the item is left out of the output, counted, and
the next run asks again. This module is that rule's one place:

- :func:`failure_cause` names what went wrong in a few words, with the
  endpoint (``unreachable at http://gpu:8000/v1 (connection refused)``);
- :func:`call_failed_reason` is the reason text a failed sample carries
  (``judge call failed: <cause>``), and :func:`call_failure_in` finds it again
  in any reason (also in rows an older version wrote as final, which a
  resuming runner then retries);
- :class:`CallsFailedError` is the end of a run that left items for a re-run;
  its message is the one line a person reads, e.g. ``judge unreachable at URL
  (connection refused): 10 of 10 items not scored; run again to retry``;
- :func:`preflight` asks the model's server once, before any work, whether it
  is up and serves the model (every verb that calls a judge calls it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from attunement.llm.base import (
    ChatModel,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)

#: a failed call's reason: "<role> call failed: <cause>" (old files: "<cause>" was
#: the error's whole message)
_CALL_FAILED = re.compile(r"\b(?:judge|model|policy|simulator) call failed: (.+)$")


def _where(exc: LLMError) -> str:
    """`` at URL`` of the endpoint that failed (no credentials: names never hold any)."""
    source = exc.source or ""
    if source.startswith("openai:"):
        return " at " + source.removeprefix("openai:").split("#", 1)[0]
    return f" ({source})" if source else ""


def _connection_detail(exc: LLMError) -> str:
    text = str(exc)
    if "ConnectError" in text or "refused" in text.lower():
        return "connection refused"
    return "connection lost"


def failure_cause(exc: BaseException) -> str:
    """What went wrong with a call, in a few words, naming the endpoint.

    >>> err = LLMConnectionError("x: failed after 5 attempts: connection failed (ConnectError: x)")
    >>> err.source = "openai:http://gpu:8000/v1#judge"
    >>> failure_cause(err)
    'unreachable at http://gpu:8000/v1 (connection refused)'
    >>> err = LLMStatusError("HTTP 404: The model `judg` does not exist.", status=404)
    >>> err.source = "openai:http://gpu:8000/v1#judg"
    >>> failure_cause(err)
    "not serving model 'judg' at http://gpu:8000/v1 (HTTP 404); check the name after '#'"
    """
    if not isinstance(exc, LLMError):
        return f"failed ({type(exc).__name__}: {' '.join(str(exc).split())})"
    where = _where(exc)
    if isinstance(exc, LLMConnectionError):
        return f"unreachable{where} ({_connection_detail(exc)})"
    if isinstance(exc, LLMStatusError) and exc.status == 404:
        model = (exc.source or "").partition("#")[2]
        return f"not serving model {model!r}{where} (HTTP 404); check the name after '#'"
    if isinstance(exc, LLMStatusError):
        return f"failing{where} (HTTP {exc.status})"
    if isinstance(exc, LLMTimeoutError):
        return f"not answering{where} (no answer within the deadline; see --timeout)"
    if isinstance(exc, LLMResponseError):
        return f"answering{where} with something that is not a chat completion"
    return " ".join(str(exc).split())  # its own words (a prompt too long, a key not set)


def call_failed_reason(exc: BaseException, role: str = "judge") -> str:
    """The reason a sample or item whose call failed carries.

    >>> call_failed_reason(LLMTimeoutError("late"))
    'judge call failed: not answering (no answer within the deadline; see --timeout)'
    """
    return f"{role} call failed: {failure_cause(exc)}"


def call_failure_in(reason: str | None) -> str | None:
    """The cause, when ``reason`` says a call failed (in any wording this project wrote).

    >>> call_failure_in("empathy: no valid judge sample out of 2 (judge call failed: unreachable)")
    'unreachable'
    >>> call_failure_in("no score found in the answer") is None
    True
    """
    if not reason:
        return None
    match = _CALL_FAILED.search(reason)
    if match is None:
        return None
    cause = match.group(1).strip()
    return cause[:-1] if cause.endswith(")") and cause.count(")") > cause.count("(") else cause


_SIMPLE = (LLMError, LLMConnectionError, LLMTimeoutError, LLMResponseError)


class CallsFailedError(LLMError):
    """A run finished what it could; the items whose model calls failed were not
    written and the same command retries them. The message is the one line."""

    def __init__(self, message: str, *, failed: int, total: int):
        super().__init__(message)
        self.failed = failed
        self.total = total


def calls_failed(
    causes: Iterable[str],
    failed: int,
    total: int,
    *,
    role: str = "judge",
    what: str = "items not scored",
) -> CallsFailedError:
    """The end of a run in which ``failed`` of ``total`` items were left undone by
    failed calls; the line names the most frequent of ``causes``.

    >>> print(calls_failed(["unreachable at U (connection refused)"], 3, 3))
    judge unreachable at U (connection refused): 3 of 3 items not scored; run again to retry
    """
    counted = Counter(causes)
    cause = counted.most_common(1)[0][0] if counted else "call failed"
    others = f" (and {len(counted) - 1} other causes)" if len(counted) > 1 else ""
    return CallsFailedError(
        f"{role} {cause}{others}: {failed} of {total} {what}; run again to retry",
        failed=failed,
        total=total,
    )


async def preflight(model: ChatModel, role: str = "judge") -> None:
    """Before any work: the model answers (its server is up and serves the model).

    Raises :class:`LLMError` whose message is one line naming the cause, e.g.
    ``judge unreachable at http://gpu:8000/v1 (connection refused); nothing was
    done``. In-process models have nothing to check.
    """
    try:
        await model.ensure_ready()
        await model.check_serving()
    except LLMError as exc:
        if exc.source is None:
            exc.source = model.name
        message = f"{role} {failure_cause(exc)}; nothing was done"
        if isinstance(exc, LLMStatusError):
            raise LLMStatusError(message, status=exc.status, body=exc.body) from exc
        kind = type(exc) if type(exc) in _SIMPLE else LLMError
        raise kind(message) from exc
