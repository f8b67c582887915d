"""``attune serve``: the reward server (OpenRLHF remote reward protocol + groups).

The server's limits and grouping are the fields of
:class:`~attunement.integrations.server.ServeSettings` (:data:`LIMITS`); the
reward is configured with the shared reward options.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import typer

from attunement.cli.common import fail, say
from attunement.cli.options import (
    ModelRun,
    fields_bundle,
    model_run,
    verb,
)
from attunement.cli.paths import path_option
from attunement.cli.reward_options import RewardFlags, reward_bundle
from attunement.integrations.server import ServeSettings

LIMITS = fields_bundle(
    ServeSettings,
    "host",
    "port",
    "deadline",
    "max_body_bytes",
    "max_batch",
    "max_active",
    "max_pending",
    "max_wait",
    "client_timeout",
    "group_size",
    "prompts_per_step",
    "group_window",
    "group_idle",
    "fallback",
    "fallback_score",
    "access_log",
    decls={"access_log": ("--access-log/--no-access-log",)},
    helps={
        "host": "Bind address; anything but loopback needs a token.",
        "port": "Port to listen on.",
        "max_body_bytes": "Largest request body accepted.",
        "access_log": "Log every request.",
    },
)
#: replies judged at once unless ``-c`` says otherwise: a training batch arrives at once
SERVE_CONCURRENCY = 64


def _needs_the_serve_extra() -> None:
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"attune serve needs {' and '.join(missing)}: pip install 'attunement[serve]'")


@verb(reward=reward_bundle("peregrm"), limits=LIMITS, llm=model_run(concurrency=SERVE_CONCURRENCY))
def serve(
    data: list[Path] | None = path_option(
        "file",
        "Examples JSONL whose ids OpenRLHF labels name (repeatable).",
        "--data",
        default=None,
    ),
    token_env: str | None = typer.Option(
        None, "--token-env", help="Environment variable holding the bearer token."
    ),
    token_file: Path | None = path_option(
        "file", "File holding the bearer token.", "--token-file", default=None
    ),
    end_marker: list[str] | None = typer.Option(
        None, "--end-marker", help="Extra end-of-turn marker to strip from queries (repeatable)."
    ),
    *,
    reward: RewardFlags,
    limits: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Serve a reward over HTTP: OpenRLHF's POST /get_reward, POST /v1/score for whole
    groups, GET /healthz, GET /metrics. Stop with Ctrl-C or SIGTERM (accepted requests
    are finished first)."""
    from attunement.integrations.server import (
        END_MARKERS,
        check_bind,
        load_examples,
        load_token,
    )
    from attunement.integrations.server import serve as run_server

    token = load_token(token_env, token_file)
    check_bind(limits["host"], token)
    settings = ServeSettings(**limits, end_markers=END_MARKERS + tuple(end_marker or ()))
    spec = reward.spec(llm.options())
    examples = load_examples(data or [])
    _needs_the_serve_extra()
    auth = "bearer token required" if token else "no token (loopback only)"
    say(
        f"serving {spec.reward} judged by {spec.judge} on http://{settings.host}:{settings.port} "
        f"({auth}; {len(examples)} examples; deadline {settings.deadline:.0f} s)"
    )
    run_server(spec, settings, token=token, examples=examples)
