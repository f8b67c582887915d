"""The OpenRLHF side: prompt data, and a ``reward_func`` that calls ``attune serve``.

OpenRLHF reads prompts from a JSON/JSONL dataset (``--data.prompt_dataset``):
with ``--data.apply_chat_template`` the ``--data.input_key`` field may hold
chat messages, and ``--data.label_key`` is passed to the reward untouched.
:func:`openrlhf_rows` writes our reply prompt there and the example id as the
label, which ``attune serve --data`` resolves.

``--reward.remote_url`` takes either an HTTP URL (OpenRLHF then POSTs with no
authentication header) or a ``.py`` file whose ``reward_func(queries, prompts,
labels)`` OpenRLHF calls in a worker thread. :class:`RemoteReward` is such a
function for a server that needs its bearer token (any non-loopback bind):
it sends the token, waits as the server's Retry-After asks on 503, and on a
4xx (a data or configuration error) logs the server's message at ERROR and
raises. OpenRLHF catches every exception of a reward call and logs it at INFO
only, leaving the sample without a reward (training then fails on the missing
number, far from the cause), so the ERROR line is where the cause shows.
``attune export openrlhf`` writes the ``.py`` file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from attunement.integrations.verl_data import ExportMemoryMode, verl_rows
from attunement.policy import DEFAULT_MEMORY_MODE, SHOW_PERSONA, SHOW_SITUATION
from attunement.records import Example

log = logging.getLogger(__name__)

REWARD_FUNC_TEMPLATE = '''"""OpenRLHF reward function: pass this file as --reward.remote_url.

Written by `attune export openrlhf`; OpenRLHF calls reward_func(queries, prompts,
labels) for each sample and this forwards it to `attune serve`.
"""

from attunement.integrations.openrlhf import RemoteReward

reward_func = RemoteReward({url!r}, token_file={token_file!r})
'''


async def _rows(examples: Sequence[Example], **prompt: Any) -> list[dict[str, Any]]:
    rows = await verl_rows(examples, **prompt)
    return [{"prompt": row["prompt"], "label": row["extra_info"]["example_id"]} for row in rows]


def openrlhf_rows(
    examples: Sequence[Example],
    *,
    memory_mode: ExportMemoryMode = DEFAULT_MEMORY_MODE,
    seed: int = 0,
    k: int = 3,
    persona: bool = SHOW_PERSONA,
    situation: bool = SHOW_SITUATION,
) -> list[dict[str, Any]]:
    """``{"prompt": [chat messages], "label": example_id}`` per example (the same
    prompt as the verl export, with the same settings and defaults)."""
    shown = {"memory_mode": memory_mode, "seed": seed, "k": k}
    return asyncio.run(_rows(examples, **shown, persona=persona, situation=situation))


def reward_func_source(url: str, token_file: str | Path | None) -> str:
    """The ``reward_func`` file OpenRLHF loads (see :class:`RemoteReward`)."""
    return REWARD_FUNC_TEMPLATE.format(
        url=url.rstrip("/"), token_file=str(token_file) if token_file else None
    )


class RemoteReward:
    """``reward_func(queries, prompts, labels)`` calling ``attune serve`` with a token.

    ``url`` is the server's base URL (``/get_reward`` is appended). Refused
    requests (503, 429) are retried after the server's Retry-After, connection
    failures after a capped backoff, until ``total_seconds`` have passed; a 4xx
    raises ``RuntimeError`` with the server's message.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        total_seconds: float = 600.0,
        request_seconds: float = 200.0,
    ):
        if token and token_file:
            raise ValueError("give token or token_file, not both")
        if token_file:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        self.url = url.rstrip("/") + "/get_reward"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.total_seconds = total_seconds
        self.request_seconds = request_seconds
        self._client: httpx2.Client | None = None

    def _http(self) -> httpx2.Client:
        if self._client is None:
            self._client = httpx2.Client(timeout=self.request_seconds, headers=self.headers)
        return self._client

    def __call__(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
    ) -> dict[str, Any]:
        body = {"query": list(queries), "prompts": list(prompts), "labels": list(labels)}
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            wait: float
            try:
                response = self._http().post(self.url, json=body)
            except httpx2.HTTPError as exc:
                wait, problem = (
                    min(30.0, 0.5 * 2 ** min(attempt, 6)),
                    f"{type(exc).__name__}: {exc}",
                )
            else:
                if response.status_code == 200:
                    return response.json()
                problem = f"HTTP {response.status_code}: {response.text[:500]}"
                if response.status_code not in (429, 503) and response.status_code < 500:
                    message = f"attune serve refused the request ({problem})"
                    log.error("%s", message)
                    raise RuntimeError(message)
                wait = _retry_after(response.headers.get("retry-after"), attempt)
            if time.monotonic() - started + wait > self.total_seconds:
                raise RuntimeError(
                    f"attune serve did not answer within {self.total_seconds:.0f} "
                    f"s ({attempt} attempts; last: {problem})"
                )
            time.sleep(wait)


def _retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait before the next attempt (the server's wish, capped at 60 s)."""
    try:
        return max(0.0, min(60.0, float(header))) if header is not None else min(30.0, 2.0**attempt)
    except ValueError:
        return min(30.0, 2.0**attempt)


@dataclass(frozen=True)
class OpenRLHFExport:
    """What :func:`export_openrlhf` wrote."""

    rows: int
    prompts: Path
    manifest: Path
    reward_func: Path | None


def export_openrlhf(
    examples: Sequence[Example],
    out: str | Path,
    *,
    memory_mode: ExportMemoryMode = DEFAULT_MEMORY_MODE,
    seed: int = 0,
    k: int = 3,
    persona: bool = SHOW_PERSONA,
    situation: bool = SHOW_SITUATION,
    server_url: str | None = None,
    token_file: str | Path | None = None,
    source: str | None = None,
) -> OpenRLHFExport:
    """Write ``prompts.jsonl`` (atomically) and its manifest into ``out``, and with
    ``server_url`` the ``reward_func.py`` that calls ``attune serve`` there."""
    from attunement.jsonl import manifest_path, write_jsonl, write_manifest
    from attunement.policy.prompting import reply_prompt_version

    if not examples:
        raise ValueError(f"{source or out}: no examples")
    if token_file is not None and server_url is None:
        raise ValueError("a token file goes with a server URL (it is written into reward_func.py)")
    shown = {"persona": persona, "situation": situation}
    rows = openrlhf_rows(examples, memory_mode=memory_mode, seed=seed, k=k, **shown)
    prompts = Path(out) / "prompts.jsonl"
    write_jsonl(prompts, rows)
    manifest = manifest_path(prompts)
    write_manifest(
        manifest,
        command="export openrlhf",
        source=source,
        rows=len(rows),
        memory_mode=memory_mode,
        seed=seed,
        k=k,
        **shown,
        prompt={"policy_reply": reply_prompt_version()},
    )
    func = None
    if server_url is not None:
        func = Path(out) / "reward_func.py"
        func.write_text(reward_func_source(server_url, token_file), encoding="utf-8")
    return OpenRLHFExport(len(rows), prompts, manifest, func)
