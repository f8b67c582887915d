"""What crosses the wire to an OpenAI-compatible server, as pure functions.

The client (:mod:`attunement.llm.openai_compat`) owns the loop: slots,
deadline, retries, fallbacks. This module owns the shapes at its two ends,
each testable without a server:

- out: :func:`request_body` (the keyword arguments of one
  ``chat.completions.create`` call) with :func:`response_format_for` and, for
  a server that cannot enforce a JSON schema, the shape written into the
  prompt (:func:`with_schema_instruction`); :func:`keyless_headers` for a
  request that must carry no credentials;
- in: :func:`parse_choices` (text and finish reason of each choice, or a
  typed error for a body that is not a chat completion),
  :func:`reported_usage` and :func:`split_tokens`;
- failures: :func:`to_llm_error` maps the SDK's and the transport's
  exceptions to attunement's typed errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import openai
from pydantic import ValidationError

from attunement.llm.base import (
    ChatRequest,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    Message,
)
from attunement.llm.endpoint import JsonMode

#: how much of an error body is kept on the error
BODY_CHARS = 2000

#: exceptions of one HTTP attempt that become an LLMError (anything else is a bug)
ATTEMPT_FAILURES = (
    TimeoutError,
    openai.APIError,
    json.JSONDecodeError,
    ValidationError,
    LLMResponseError,
)

# --------------------------------------------------------------------------- out


def schema_instruction(schema: dict[str, Any]) -> str:
    """The shape of the answer, written out for a server that cannot enforce it."""
    return (
        "Answer with one JSON object and nothing else (no code fence, no comment). "
        "It must be valid against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False, sort_keys=True)
    )


def with_schema_instruction(
    messages: Sequence[Message],
    schema: dict[str, Any],
) -> list[Message]:
    """The messages with the answer's shape appended to the last user message
    (not as an extra system message: many chat templates allow only one, first)."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = m["content"].rstrip() + "\n\n" + schema_instruction(schema)
            return out
    return [*out, {"role": "user", "content": schema_instruction(schema)}]


def response_format_for(
    schema: dict[str, Any],
    mode: JsonMode = "json_schema",
) -> dict[str, Any] | None:
    """The ``response_format`` asking for JSON valid against ``schema`` in ``mode``.

    ``json_object`` carries the schema too: llama-cpp-python's server turns it
    into a grammar; servers that only know plain JSON mode ignore it.

    >>> response_format_for({"type": "object"}, "json_object")
    {'type': 'json_object', 'schema': {'type': 'object'}}
    """
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def request_body(
    request: ChatRequest, *, model: str | None, n: int, seed: int | None, json_mode: JsonMode
) -> dict[str, Any]:
    """The keyword arguments of one ``chat.completions.create`` call."""
    messages = request.message_dicts
    body: dict[str, Any] = {
        "model": model,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if n > 1:
        body["n"] = n
    if seed is not None:
        body["seed"] = seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.json_schema is not None:
        if json_mode != "json_schema":
            messages = with_schema_instruction(messages, request.json_schema)
        fmt = response_format_for(request.json_schema, json_mode)
        if fmt is not None:
            body["response_format"] = fmt
    body["messages"] = messages
    return body


def keyless_headers(environ: Mapping[str, str]) -> dict[str, Any]:
    """Headers to leave out when no key is sent: the SDK would otherwise add the
    organisation, project and custom headers it reads from the environment."""
    names = ["Authorization", "OpenAI-Organization", "OpenAI-Project"]
    for line in environ.get("OPENAI_CUSTOM_HEADERS", "").splitlines():
        if ":" in line:
            names.append(line.split(":", 1)[0].strip())
    return {name: openai.Omit() for name in names if name}


# --------------------------------------------------------------------------- in


def parse_choices(response: Any) -> list[tuple[str, str | None]]:
    """``(text, finish_reason)`` of each choice, in choice order.

    Raises :class:`LLMResponseError` when the body is not a chat completion
    (the SDK hands back plain text for a non-JSON content type, and builds
    models without validation).
    """
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        shown = response[:200] if isinstance(response, str) else type(response).__name__
        raise LLMResponseError(f"the body is not a chat completion with choices: {shown!r}")
    out = []
    for pos, choice in enumerate(sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)):
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None else None
        if message is None or not (content is None or isinstance(content, str)):
            raise LLMResponseError(f"choice {pos} has no message text")
        out.append((content or "", getattr(choice, "finish_reason", None)))
    return out


def reported_usage(response: Any) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) the server reported, zeros if absent."""
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    return int(prompt or 0), int(completion or 0)


def split_tokens(total: int, texts: list[str]) -> list[int]:
    """Share a request's completion tokens among its samples by text length.

    The API reports one total for all ``n`` choices; the shares sum exactly to
    it (largest remainder), so totals stay right even though per-sample counts
    are estimates.

    >>> split_tokens(10, ["aaa", "a"]), split_tokens(5, ["only"])
    ([8, 2], [5])
    """
    if len(texts) == 1:
        return [total]
    weights = [len(t) for t in texts]
    if sum(weights) == 0:
        weights = [1] * len(texts)
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(texts)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


# --------------------------------------------------------------------------- failures


def to_llm_error(exc: BaseException) -> LLMError:
    """Map a transport or parsing failure to attunement's typed errors."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return LLMTimeoutError("no answer within the deadline")
    if isinstance(exc, openai.APIStatusError):
        return LLMStatusError(
            f"HTTP {exc.status_code}: {exc.message}", status=exc.status_code, body=_body_text(exc)
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return LLMConnectionError(f"connection failed{detail}")
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValidationError):
        return LLMResponseError(f"the body is not a chat completion ({exc})")
    if isinstance(exc, openai.APIError):
        return LLMError(f"API error: {exc}")
    raise TypeError(f"not a transport failure: {exc!r}") from exc


def _body_text(exc: openai.APIStatusError) -> str:
    try:
        text = exc.response.text
    except Exception:  # noqa: BLE001 - a body that cannot be read says nothing
        text = ""
    return (text or json.dumps(exc.body, default=str))[:BODY_CHARS]


def status_headers(exc: BaseException) -> Mapping[str, str] | None:
    """The response headers of an HTTP error status (where Retry-After is read)."""
    if isinstance(exc, openai.APIStatusError):
        return exc.response.headers
    return None


def with_message(error: LLMError, message: str) -> LLMError:
    """The same kind of error (status and body kept) with another message."""
    if isinstance(error, LLMStatusError):
        return LLMStatusError(message, status=error.status, body=error.body)
    return type(error)(message)
