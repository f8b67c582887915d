"""Running ``attune serve``: in the foreground until a signal, or in a thread.

Both stop the same way, which is what makes a restart safe during training:
on SIGTERM or SIGINT (or leaving :class:`ServerThread`) the service drains
while it keeps listening: new requests, and those still waiting for room, get
503 and Retry-After, and ``/healthz`` answers 503 ``draining``, so a load
balancer or a probe sees the state, until the last accepted request has been
answered (each is bounded by its deadline; at most the grace period). Only
then is uvicorn told to exit: it stops accepting connections, and the judge is
closed last. A second signal stops at once.
"""

from __future__ import annotations

import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Self

from attunement.integrations.server.app import create_app
from attunement.integrations.server.auth import is_loopback
from attunement.integrations.server.service import RewardService
from attunement.integrations.server.settings import ServeSettings
from attunement.judging import RewardModel, RewardSpec
from attunement.records import Example

#: how often a draining server looks whether the last request was answered
_DRAIN_POLL = 0.05


def _uvicorn_server(
    app: Any, settings: ServeSettings, on_exit: Callable[[], None], idle: Callable[[], bool]
):
    import uvicorn

    class Server(uvicorn.Server):
        draining_since: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.draining_since is not None:  # a second signal: stop now
                super().handle_exit(sig, frame)
                return
            self.draining_since = time.monotonic()
            on_exit()
            threading.Thread(
                target=self._exit_when_idle, args=(sig, frame), name="attune-drain", daemon=True
            ).start()

        def _exit_when_idle(self, sig: int, frame: Any) -> None:
            deadline = time.monotonic() + settings.grace
            while not idle() and time.monotonic() < deadline and not self.should_exit:
                time.sleep(_DRAIN_POLL)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.grace),
        timeout_keep_alive=30,
    )
    return Server(config)


def serve(
    source: RewardSpec | RewardModel,
    settings: ServeSettings,
    *,
    token: str | None = None,
    examples: Mapping[str, Example] | None = None,
) -> None:
    """Run the server in this thread until SIGINT/SIGTERM (then drain and stop)."""
    holder: dict[str, RewardService] = {}
    app = create_app(
        source,
        settings,
        token=token,
        examples=examples,
        on_ready=lambda svc: holder.__setitem__("service", svc),
    )

    def draining() -> None:
        if "service" in holder:
            holder["service"].draining = True

    def idle() -> bool:
        return "service" not in holder or holder["service"].admission.idle

    _uvicorn_server(app, settings, draining, idle).run()


class ServerThread:
    """The server on a loopback port in a background thread (tests, benchmarks).

    ``with ServerThread(reward, settings) as server: server.url`` ... leaving
    the block drains it like a SIGTERM would.
    """

    def __init__(
        self,
        source: RewardSpec | RewardModel,
        settings: ServeSettings | None = None,
        *,
        token: str | None = None,
        examples: Mapping[str, Example] | None = None,
    ):
        self.settings = (settings or ServeSettings()).model_copy(update={"port": 0})
        if not is_loopback(self.settings.host):
            raise ValueError("ServerThread binds loopback addresses only")
        self.service: RewardService | None = None
        self._ready = threading.Event()
        app = create_app(
            source, self.settings, token=token, examples=examples, on_ready=self._on_ready
        )
        self._server = _uvicorn_server(app, self.settings, self._drain, self._idle)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _on_ready(self, service: RewardService) -> None:
        self.service = service
        self._ready.set()

    def _drain(self) -> None:
        if self.service is not None:
            self.service.draining = True

    def _idle(self) -> bool:
        return self.service is None or self.service.admission.idle

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    def start(self) -> ServerThread:
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.host.strip("[]"), 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="attune-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not (self._ready.is_set() and self._server.started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reward server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Drain: refuse new work, finish what was accepted, close (as SIGTERM does)."""
        if self._thread is None:
            return
        self._server.handle_exit(signal.SIGTERM, None)
        self._thread.join(timeout=self.settings.grace + 30)
        if self._socket is not None:
            self._socket.close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
