"""A simulated OpenAI-compatible chat server, for fault tests and benchmarks.

It speaks just enough HTTP/1.1 (with keep-alive) for the ``openai`` SDK:
``POST /v1/chat/completions`` and ``GET /v1/models``. It runs on its own event
loop in a background thread, so synchronous and asynchronous tests can use it
alike::

    cfg = SimConfig(slots=4, base_latency=0.01, faults=["500", "429"])
    with SimServer(cfg) as server:
        model = load_chat_model(f"openai:{server.base_url}#sim-judge")
        ...
        server.stats().requests

Latency model (honest by construction): ``slots`` is the number of sequences
the server decodes at once (vLLM's ``max_num_seqs``, llama.cpp server's
``--parallel``). Each sample of a request is one sequence: it waits, first come
first served, for a free slot and holds it for::

    base_latency + per_prompt_token * uncached prompt tokens + per_output_token * its tokens

and the request is answered when its last sample is done. So ``n`` samples in
one request save HTTP round trips and client work, not decoding capacity.
Each sample's sequence prefills the prompt (a server that forks ``n`` samples
from one prefill pays it once: this model is the conservative one) through an
ideal prefix cache of ``prefix_block``-character blocks
(:mod:`attunement.perf.prefix_cache`; 0 turns it off): the tokens it serves
cost nothing and are counted in ``cached_prompt_tokens``; ``base_seconds``,
``prefill_seconds`` and ``decode_seconds`` split the slot time among the three
terms above. ``n_shares_slot=True`` models a server whose n samples cost one
slot for the longest sample's time, which flatters n-sampling.
``busy_seconds`` sums the slot-seconds of all samples and
``max_request_seconds`` is the longest single sample, so
``max(max_request_seconds, busy_seconds / slots)`` is a lower bound on the
wall time any client needs for the calls the server answered
(:meth:`SimServer.lower_bound_seconds`).

Faults are applied to the first chat requests, in order, one per request.
They bypass the slots (they model a broken proxy or network, not the model):

- ``"500"``: an internal server error;
- ``"429"``: too many requests, with ``Retry-After: <retry_after>`` (default 0);
- ``"slow"``: wait ``slow_seconds`` first, then answer normally if the client
  is still connected (a client with a shorter deadline has given up);
- ``"garbled"``: status 200 with a body that is not JSON;
- ``"drop"``: close the connection without answering;
- ``"400"``: a bad-request error (a client must not retry it);
- ``"none"``: no fault for this request (to put a fault on a later one).

Servers that support less of the API than vLLM are modelled too:

- ``supports_n=False`` ignores ``n`` (one choice, whatever was asked);
- ``n_rejection=400`` (or 500) refuses ``n > 1`` with the llama.cpp server's
  message "Only one completion choice is allowed";
- ``response_formats`` lists the ``response_format`` types accepted; another
  type is answered as llama-cpp-python's server does, HTTP 500 with a pydantic
  validation message ("Input should be 'text' or 'json_object'");
- ``known_model_only=True`` answers another model than ``model_name`` as vLLM
  does (HTTP 404); ``SimServer(port=P)`` comes back where a stopped one was.

String length limits of a ``json_schema`` response format (``maxLength``)
are treated as real servers treat them, by ``max_length``: ``"ignore"`` sends
the responder's text as it is (most servers: the schema shapes the JSON,
lengths are not enforced); ``"cut"`` cuts every string of the answer at its
``maxLength``, mid-word, as a decoder whose grammar enforces the bound does.

Tokens are counted with :func:`attunement.llm.scripted.count_tokens` (words
and punctuation runs), and an answer is cut to ``max_tokens`` tokens
(``finish_reason="length"``). :meth:`SimServer.received_headers` lists the
headers of the last chat requests (to check which credentials were sent).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from attunement.llm.scripted import count_tokens
from attunement.perf.prefix_cache import PrefixCache
from attunement.perf.simhttp import error_body, send, send_json
from attunement.perf.simschema import enforce_max_length

FAULTS = ("500", "429", "slow", "garbled", "drop", "400", "none")

#: responder(messages, index, params) -> answer text
SimResponder = Callable[[list[dict[str, Any]], int, dict[str, Any]], str]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_MAX_BODY = 32 * 1024 * 1024
_LOG_SIZE = 1000


@dataclass
class SimConfig:
    """How the simulated server behaves. See the module docstring."""

    slots: int = 8
    base_latency: float = 0.05
    per_prompt_token: float = 0.0
    per_output_token: float = 0.002
    supports_n: bool = True
    n_shares_slot: bool = False
    responder: SimResponder | None = None
    faults: list[str] = field(default_factory=list)
    slow_seconds: float = 5.0
    model_name: str = "sim-judge"
    retry_after: str = "0"
    n_rejection: int | None = None
    response_formats: tuple[str, ...] = ("text", "json_object", "json_schema")
    max_length: Literal["ignore", "cut"] = "ignore"
    prefix_block: int = 64
    known_model_only: bool = False

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")
        for name in (
            "base_latency",
            "per_prompt_token",
            "per_output_token",
            "slow_seconds",
            "prefix_block",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; expected some of {list(FAULTS)}")
        if self.n_rejection not in (None, 400, 500):
            raise ValueError("n_rejection must be None, 400 or 500")
        if self.max_length not in ("ignore", "cut"):
            raise ValueError("max_length must be 'ignore' or 'cut'")


@dataclass(frozen=True)
class SimStats:
    """What the server did since it started (or since :meth:`SimServer.reset_stats`).

    ``requests`` counts every chat request received, faulted ones included;
    ``samples`` and the token counts only the answered ones. ``peak_in_flight``
    is the largest number of chat requests received and not yet answered
    (queued for a slot or in service) at one moment. ``busy_seconds`` is the sum
    of ``base_seconds``, ``prefill_seconds`` and ``decode_seconds``.
    """

    requests: int = 0
    samples: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_seconds: float = 0.0
    base_seconds: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    max_request_seconds: float = 0.0
    peak_in_flight: int = 0
    faults_served: int = 0


def default_responder(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
    """Echo the start of the last message, tagged with the sample index and seed."""
    last = str(messages[-1].get("content", "")) if messages else ""
    words = " ".join(_TOKEN.findall(last)[:12])
    seed = params.get("seed")
    tag = f"sample {index}" + (f" seed {seed}" if seed is not None else "")
    return f"Simulated answer ({tag}): {words}"


def truncate_tokens(text: str, max_tokens: int) -> tuple[str, int, bool]:
    """Cut ``text`` after ``max_tokens`` tokens; return (text, tokens, was_cut)."""
    matches = list(itertools.islice(_TOKEN.finditer(text), max_tokens + 1))
    if len(matches) <= max_tokens:
        return text, len(matches), False
    return text[: matches[max_tokens - 1].end()], max_tokens, True


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SimServer:
    """The server; use as a context manager (or :meth:`start` / :meth:`stop`)."""

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimConfig()
        self.host = host
        self._bind_port = port
        self.port: int | None = None
        self._lock = threading.Lock()
        self._stats = SimStats()
        self._in_flight = 0
        self._chat_requests = 0
        self._received: deque[dict[str, Any]] = deque(maxlen=_LOG_SIZE)
        self._headers: deque[dict[str, str]] = deque(maxlen=_LOG_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        block = self.config.prefix_block
        self._prefix = PrefixCache(block, unit="char") if block else None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not running")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> SimServer:
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name="simserver", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    async def _open(self) -> None:
        self._slots = asyncio.Semaphore(self.config.slots)
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self._bind_port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stop(self) -> None:
        """Close every connection and stop the thread. Safe to call twice."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ statistics

    def stats(self) -> SimStats:
        with self._lock:
            return self._stats

    def reset_stats(self) -> None:
        """Zero the counters (faults already used stay used)."""
        with self._lock:
            self._stats = SimStats(peak_in_flight=self._in_flight)
            self._received.clear()
            self._headers.clear()

    def lower_bound_seconds(self) -> float:
        """No client can be served the calls answered so far in less time than this."""
        s = self.stats()
        return max(s.max_request_seconds, s.busy_seconds / self.config.slots)

    def received(self) -> list[dict[str, Any]]:
        """The JSON bodies of the last chat requests received (oldest first)."""
        with self._lock:
            return list(self._received)

    def received_headers(self) -> list[dict[str, str]]:
        """The headers (names lower-cased) of the last chat requests, oldest first."""
        with self._lock:
            return list(self._headers)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            s = self._stats
            values = {k: getattr(s, k) for k in SimStats.__dataclass_fields__}
            for key, delta in changes.items():
                if key == "max_request_seconds":
                    values[key] = max(values[key], delta)
                else:
                    values[key] += delta
            values["peak_in_flight"] = max(values["peak_in_flight"], self._in_flight)
            self._stats = SimStats(**values)

    # ------------------------------------------------------------------ HTTP

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                keep_alive = await self._serve_request(head, reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # shutting down: end quietly (a cancelled connection task makes
            # asyncio's stream callback log a spurious error on Python 3.11)
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve_request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; return whether the connection stays open."""
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await send_json(writer, 400, error_body("malformed request line"), False)
            return False
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" and (version == "HTTP/1.1" or conn == "keep-alive")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await send_json(writer, 411, error_body("send a Content-Length body"), False)
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            await send_json(writer, 400, error_body("bad Content-Length"), False)
            return False
        if length > _MAX_BODY:
            await send_json(writer, 413, error_body("body too large"), False)
            return False
        body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            if method != "GET":
                await send_json(writer, 405, error_body("use GET"), keep_alive)
                return keep_alive
            await send_json(writer, 200, self._models_body(), keep_alive)
            return keep_alive
        if path in ("/v1/chat/completions", "/chat/completions"):
            if method != "POST":
                await send_json(writer, 405, error_body("use POST"), keep_alive)
                return keep_alive
            with self._lock:
                self._headers.append(headers)
            return await self._chat(body, reader, writer, keep_alive)
        await send_json(writer, 404, error_body(f"no route {path!r}"), keep_alive)
        return keep_alive

    async def _chat(
        self,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        with self._lock:
            index = self._chat_requests
            self._chat_requests += 1
            self._in_flight += 1
        try:
            self._update(requests=1)
            fault = self.config.faults[index] if index < len(self.config.faults) else None
            if fault == "none":
                fault = None
            if fault is not None:
                self._update(faults_served=1)
                if fault == "500":
                    await send_json(
                        writer, 500, error_body("simulated failure", "server_error"), keep_alive
                    )
                    return keep_alive
                if fault == "429":
                    await send_json(
                        writer,
                        429,
                        error_body("simulated rate limit", "rate_limit_exceeded"),
                        keep_alive,
                        extra={"Retry-After": self.config.retry_after},
                    )
                    return keep_alive
                if fault == "400":
                    await send_json(writer, 400, error_body("simulated bad request"), keep_alive)
                    return keep_alive
                if fault == "garbled":
                    await send(writer, 200, b'{"id": "chatcmpl-garbled", "choi<<<<', keep_alive)
                    return keep_alive
                if fault == "drop":
                    writer.transport.abort()
                    return False
                # "slow": stall, then answer if the client is still there
                await asyncio.sleep(self.config.slow_seconds)
                if reader.at_eof() or writer.is_closing():
                    return False
            try:
                payload = self._parse_chat(body)
            except _BadRequest as exc:
                await send_json(writer, exc.status, error_body(exc.message), keep_alive)
                return keep_alive
            with self._lock:
                self._received.append(payload)
            refusal = self._refusal(payload)
            if refusal is not None:
                await send_json(writer, refusal[0], refusal[1], keep_alive)
                return keep_alive
            response = await self._generate(payload)
            await send_json(writer, 200, response, keep_alive)
            return keep_alive
        finally:
            with self._lock:
                self._in_flight -= 1

    def _parse_chat(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _BadRequest(400, f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise _BadRequest(400, "body must be a JSON object")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest(400, "'messages' must be a non-empty list")
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content", ""), str):
                raise _BadRequest(400, "each message needs a string 'content'")
        n = payload.get("n", 1)
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _BadRequest(400, f"'n' must be a positive integer, got {n!r}")
        max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens")) or 256
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _BadRequest(400, f"'max_tokens' must be a positive integer, got {max_tokens!r}")
        return payload

    def _refusal(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The error a less capable server gives this request, if any."""
        cfg = self.config
        if cfg.known_model_only and payload.get("model") != cfg.model_name:
            message = f"The model `{payload.get('model')}` does not exist."
            return 404, error_body(message, "NotFoundError")
        if cfg.n_rejection is not None and (payload.get("n") or 1) > 1:
            return cfg.n_rejection, error_body("Only one completion choice is allowed")
        fmt = payload.get("response_format") or {}
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind is not None and kind not in cfg.response_formats:
            # llama-cpp-python's server: a FastAPI validation error, sent as HTTP 500
            expected = " or ".join(repr(k) for k in cfg.response_formats)
            detail = {
                "type": "literal_error",
                "loc": ("body", "response_format", "type"),
                "msg": f"Input should be {expected}",
                "input": kind,
            }
            return 500, error_body(f"1 validation error:\n  {detail}", "internal_server_error")
        return None

    async def _generate(self, payload: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        messages = payload["messages"]
        n = payload.get("n") or 1
        max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens")) or 256
        params = {k: v for k, v in payload.items() if k != "messages"}
        responder = cfg.responder or default_responder
        count = n if cfg.supports_n else 1
        if self._prefix is not None:
            prompt_tokens, cached = self._prefix.serve(messages)
        else:
            prompt_tokens, cached = (
                sum(count_tokens(str(m.get("content", ""))) for m in messages),
                0,
            )
        choices, lengths = [], []
        for i in range(count):
            answer = str(responder(messages, i, params))
            if cfg.max_length == "cut":
                answer = enforce_max_length(answer, payload)
            text, tokens, cut = truncate_tokens(answer, max_tokens)
            lengths.append(tokens)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if cut else "stop",
                    "logprobs": None,
                }
            )
        prefill = cfg.per_prompt_token * (prompt_tokens - cached)
        if self._slots is None:
            raise RuntimeError("the server was not started")
        decoded = [max(lengths)] if cfg.n_shares_slot else lengths
        times = [cfg.base_latency + prefill + cfg.per_output_token * t for t in decoded]

        async def occupy(seconds: float) -> None:
            async with self._slots:
                await asyncio.sleep(seconds)

        await asyncio.gather(*(occupy(t) for t in times))
        self._update(
            samples=count,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            completion_tokens=sum(lengths),
            busy_seconds=sum(times),
            base_seconds=cfg.base_latency * len(times),
            prefill_seconds=prefill * len(times),
            decode_seconds=cfg.per_output_token * sum(decoded),
            max_request_seconds=max(times),
        )
        return {
            "id": f"chatcmpl-sim-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model") or cfg.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": sum(lengths),
                "total_tokens": prompt_tokens + sum(lengths),
            },
        }

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.config.model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "attunement-sim",
                }
            ],
        }
