"""The HTTP/1.1 answers of the simulated server (:mod:`attunement.perf.simserver`).

Kept apart from the server's request handling and latency model: a status
line, JSON headers with a Content-Length and the keep-alive decision, and the
OpenAI-style error body, which is all the ``openai`` SDK needs to read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """An OpenAI-style error document."""
    return {"error": {"message": message, "type": kind, "code": None}}


async def send_json(
    writer: asyncio.StreamWriter,
    status: int,
    doc: Any,
    keep_alive: bool,
    extra: dict[str, str] | None = None,
) -> None:
    await send(writer, status, json.dumps(doc).encode("utf-8"), keep_alive, extra)


async def send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    keep_alive: bool,
    extra: dict[str, str] | None = None,
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
