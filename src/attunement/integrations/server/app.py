"""``attune serve``: attunement's rewards over HTTP, for OpenRLHF and any trainer.

Endpoints (an ASGI app on Starlette, served by uvicorn):

``POST /get_reward``
    OpenRLHF's remote reward protocol (``--reward.remote_url``). Body
    ``{"query": [...], "prompts": [...], "labels": [...]}``: ``query[i]`` is
    the prompt and the policy's response decoded with special tokens,
    ``prompts[i]`` the prompt alone, ``labels[i]`` our example id (resolved
    against the ``--data`` file loaded at start) or the example's JSON.
    Answer ``{"rewards": [...], "scores": [...], "extra_logs": {key: [...]}}``
    with one number per item in every list (empty lists for an empty body).
    OpenRLHF sends one sample per request and gives up on the sample after its
    retries, so a request that was accepted is always answered with numbers:
    an unscorable reply gets the fallback (:mod:`attunement.integrations.scorer`),
    flagged in ``extra_logs["attune/unscorable"]``, within the deadline.
``POST /v1/score``
    A whole group: ``{"example": {...} | "example_id": "...", "replies":
    [{"response": ..., "analysis": ...} | {"text": ...}], "criteria_round": N}``
    answers one result per reply with its full breakdown.
``GET /healthz``
    ``200 {"status": "ok", ...}``; ``503 {"status": "draining", ...}`` from
    the shutdown signal until the last accepted request is answered.
``GET /metrics``
    Prometheus text (:mod:`~attunement.integrations.server.metrics`).

This module only routes: it checks the token (:mod:`~attunement.integrations.server.auth`,
on every endpoint but ``/healthz``), reads bodies within ``max_body_bytes``
(413; malformed or too deeply nested JSON 400, a non-JSON content type 415),
counts every answer by path and status, and hands the body to
:class:`RewardService`, which does the work and raises :class:`HTTPProblem`
for every refusal (invalid fields 422, overload and draining 503 with
Retry-After). An unexpected exception is logged and answered 500 here, so it
is counted like every other status. Starting, draining and stopping the
server: :mod:`~attunement.integrations.server.runner`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from attunement.integrations.server.auth import bearer_matches, check_bind
from attunement.integrations.server.protocol import HTTPProblem, clean_json, finite
from attunement.integrations.server.service import RewardService, open_service
from attunement.integrations.server.settings import ServeSettings
from attunement.judging import RewardModel, RewardSpec
from attunement.records import Example

log = logging.getLogger(__name__)

#: the ``type`` of an error answer, by status
_ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
    503: "unavailable",
}

Handler = Callable[[RewardService, Any], Awaitable[dict[str, Any]]]


def _problem(exc: HTTPProblem):
    from starlette.responses import JSONResponse

    kind = _ERROR_TYPES.get(exc.status, "error")
    return JSONResponse(
        {"error": {"message": exc.message, "type": kind}},
        status_code=exc.status,
        headers=exc.headers,
    )


def _authorize(request: Any, token: str | None) -> None:
    """Raise 401 unless the request carries the bearer token (when one is set)."""
    if token is not None and not bearer_matches(request.headers.get("authorization", ""), token):
        raise HTTPProblem(
            401,
            "missing or wrong bearer token (Authorization: Bearer ...)",
            {"WWW-Authenticate": 'Bearer realm="attune"'},
        )


async def _read_json(request: Any, limit: int) -> Any:
    """The JSON body, refused past ``limit`` bytes whether declared or streamed."""
    ctype = request.headers.get("content-type", "application/json").lower()
    if "json" not in ctype:
        raise HTTPProblem(415, f"send JSON (Content-Type: application/json), not {ctype!r}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPProblem(400, "bad Content-Length") from None
        if size > limit:
            raise HTTPProblem(
                413, f"body of {size} bytes exceeds the limit of {limit} (--max-body-bytes)"
            )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPProblem(413, f"body exceeds the limit of {limit} bytes (--max-body-bytes)")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPProblem(400, "body is nested too deeply") from None
    return clean_json(doc)


def _internal(path: str, exc: Exception) -> HTTPProblem:
    log.error("attune serve: %s failed", path, exc_info=exc)
    return HTTPProblem(500, f"internal error ({type(exc).__name__}); see the server's log")


def create_app(
    source: RewardSpec | RewardModel,
    settings: ServeSettings | None = None,
    *,
    token: str | None = None,
    examples: Mapping[str, Example] | None = None,
    on_ready: Callable[[RewardService], None] | None = None,
):
    """The Starlette app. ``source`` is a spec (judge opened at startup, closed at
    shutdown) or a ready reward model (left open)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    settings = settings or ServeSettings()
    check_bind(settings.host, token)
    holder: dict[str, RewardService] = {}

    @asynccontextmanager
    async def lifespan(app: Any):
        async with open_service(source, settings, examples=examples) as svc:
            holder["service"] = svc
            app.state.service = svc
            if on_ready is not None:
                on_ready(svc)
            yield

    def scoring(path: str, handler: Handler):
        async def endpoint(request: Request) -> Response:
            svc = holder["service"]
            started = time.monotonic()
            try:
                _authorize(request, token)
                result = await handler(svc, await _read_json(request, settings.max_body_bytes))
            except HTTPProblem as exc:
                svc.metrics.request(path, exc.status)
                if exc.status < 500 and exc.status != 401:
                    log.warning("attune serve: %s answered %d: %s", path, exc.status, exc.message)
                return _problem(exc)
            except Exception as exc:  # noqa: BLE001 - a bug is logged, counted and answered 500
                svc.metrics.request(path, 500)
                return _problem(_internal(path, exc))
            svc.metrics.request(path, 200)
            svc.metrics.observe(path, time.monotonic() - started)
            return JSONResponse(finite(result))

        return endpoint

    async def healthz(request: Request) -> Response:
        svc = holder["service"]
        status = 503 if svc.draining else 200
        svc.metrics.request("/healthz", status)
        return JSONResponse(svc.health(), status_code=status)

    async def metrics(request: Request) -> Response:
        svc = holder["service"]
        try:
            _authorize(request, token)
        except HTTPProblem as exc:
            svc.metrics.request("/metrics", exc.status)
            return _problem(exc)
        svc.metrics.request("/metrics", 200)
        text = svc.metrics.render(svc.scorer, svc.admission, await svc.coordinator.stats())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/get_reward", scoring("/get_reward", RewardService.get_reward), methods=["POST"]),
        Route("/v1/score", scoring("/v1/score", RewardService.score_group), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.holder = holder
    return app
