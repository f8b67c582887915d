"""Servers in their own processes, as they would run on a cluster.

A benchmark that ran the simulated judge or the reward server in its own
process would share one interpreter lock with its client, and a busy client
would delay the servers' timers: the figures would measure that contention
rather than the code under test. So each server runs in a spawned child
process, started and stopped over a pipe: the child sends its address once it
listens, then answers commands until it is told to stop.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from attunement.integrations.server import ServerThread, ServeSettings, load_examples
from attunement.judging import RewardSpec
from attunement.perf.simserver import SimConfig, SimServer, SimStats

STOP = "stop"


class ChildServer:
    """A server in a spawned child process; ``with`` starts it and stops it.

    ``target(*args, conn)`` runs in the child: it sends the server's address
    on ``conn``, then answers commands (:meth:`ask`) until it receives
    :data:`STOP`.
    """

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        *,
        name: str,
        start_seconds: float,
        stop_seconds: float,
    ):
        self.target = target
        self.args = args
        self.name = name
        self.start_seconds = start_seconds
        self.stop_seconds = stop_seconds
        self.address = ""
        self._conn: Any = None
        self._proc: Any = None

    def __enter__(self) -> Self:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=self.target, args=(*self.args, child), daemon=True, name=self.name
        )
        self._proc.start()
        if not self._conn.poll(self.start_seconds):
            self._proc.terminate()
            raise RuntimeError(f"{self.name} did not start within {self.start_seconds:.0f} s")
        self.address = self._conn.recv()
        return self

    def ask(self, command: str) -> Any:
        """Send a command to the child and return its answer."""
        self._conn.send(command)
        return self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send(STOP)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(self.stop_seconds)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)


# --------------------------------------------------------------------------- the simulated judge


def _serve_sim(config: SimConfig, conn: Any) -> None:
    """Child process: a SimServer answering 'stats' and 'reset' until 'stop'."""
    with SimServer(config) as server:
        conn.send(server.base_url)
        while (command := conn.recv()) != STOP:
            if command == "stats":
                conn.send((server.stats(), server.lower_bound_seconds()))
            elif command == "reset":
                server.reset_stats()
                conn.send(None)
            else:
                conn.send(ValueError(f"unknown command {command!r}"))


class ServerProcess(ChildServer):
    """The simulated judge server (:class:`SimServer`) in its own process."""

    def __init__(self, config: SimConfig):
        super().__init__(
            _serve_sim, (config,), name="attune-simserver", start_seconds=60, stop_seconds=10
        )
        self.config = config

    @property
    def base_url(self) -> str:
        return self.address

    def stats(self) -> tuple[SimStats, float]:
        """(SimStats, lower bound seconds) since the last reset."""
        return self.ask("stats")

    def reset_stats(self) -> None:
        self.ask("reset")


# --------------------------------------------------------------------------- the reward server


def _serve_reward(spec_json: str, settings_json: str, data: str, conn: Any) -> None:
    """Child process: ``attune serve`` on loopback until 'stop' (then it drains)."""
    spec = RewardSpec.model_validate_json(spec_json)
    settings = ServeSettings.model_validate_json(settings_json)
    with ServerThread(spec, settings, examples=load_examples([data])) as server:
        conn.send(server.url)
        conn.recv()


class RewardServerProcess(ChildServer):
    """``attune serve`` (:class:`ServerThread`) in its own process."""

    def __init__(self, spec: RewardSpec, settings: ServeSettings, data: str | Path):
        super().__init__(
            _serve_reward,
            (spec.model_dump_json(), settings.model_dump_json(), str(data)),
            name="attune-serve-bench",
            start_seconds=120,
            stop_seconds=120,
        )

    @property
    def url(self) -> str:
        return self.address
