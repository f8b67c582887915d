"""``attune serve``: the reward server (OpenRLHF remote reward protocol + groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attunement.cli.common import (
    CachePath,
    Concurrency,
    Retries,
    Timeout,
    console,
    fail,
    llm_options,
)
from attunement.cli.reward_options import (
    JudgeSpec,
    NoBystander,
    NoExpression,
    NoReception,
    NoResonation,
    RewardConfigFile,
    RewardName,
    RewardSet,
    reward_spec,
)
from attunement.integrations.groups import Fallback


def register(app: typer.Typer) -> None:

    app.command("serve")(serve_cmd)


def serve_cmd(
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Examples JSONL whose ids OpenRLHF labels name (repeatable)."),
    ] = None,
    reward: RewardName = "peregrm",
    judge: JudgeSpec = "local",
    no_resonation: NoResonation = False,
    no_expression: NoExpression = False,
    no_reception: NoReception = False,
    no_bystander: NoBystander = False,
    reward_config: RewardConfigFile = None,
    assignments: RewardSet = None,
    host: Annotated[
        str, typer.Option("--host", help="Bind address; anything but loopback needs a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    token_env: Annotated[
        str | None,
        typer.Option("--token-env", help="Environment variable holding the bearer token."),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the bearer token.")
    ] = None,
    deadline: Annotated[
        float,
        typer.Option(
            "--deadline", min=1.0, help="Seconds from acceptance to answer (fallback after)."
        ),
    ] = 150.0,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024)] = 8 * 1024 * 1024,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Items per request.")] = 256,
    max_active: Annotated[
        int, typer.Option("--max-active", min=1, help="Replies judged at once.")
    ] = 512,
    max_pending: Annotated[
        int,
        typer.Option(
            "--max-pending",
            min=1,
            help="Replies accepted and unanswered; beyond: 503 + Retry-After.",
        ),
    ] = 8192,
    group_size: Annotated[
        int | None,
        typer.Option(
            "--group-size", min=1, help="Samples per prompt of the trainer (closes a group)."
        ),
    ] = None,
    group_window: Annotated[
        float, typer.Option("--group-window", min=1.0, help="Seconds a group stays open at most.")
    ] = 600.0,
    group_idle: Annotated[
        float,
        typer.Option(
            "--group-idle", min=0.1, help="Seconds without a new reply that close a group."
        ),
    ] = 60.0,
    fallback: Annotated[
        Fallback,
        typer.Option(
            "--fallback",
            help="Number for an unscorable reply: its group's mean reward so far, "
            "or --fallback-score.",
        ),
    ] = "group_mean",
    fallback_score: Annotated[float, typer.Option("--fallback-score")] = 0.0,
    end_marker: Annotated[
        list[str] | None,
        typer.Option(
            "--end-marker", help="Extra end-of-turn marker to strip from queries (repeatable)."
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log")] = False,
    concurrency: Concurrency = 64,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
) -> None:
    """Serve a reward over HTTP: OpenRLHF's POST /get_reward, POST /v1/score for whole
    groups, GET /healthz, GET /metrics. Stop with Ctrl-C or SIGTERM (accepted requests
    are finished first)."""
    from attunement.integrations.server import (
        END_MARKERS,
        ServeSettings,
        check_bind,
        load_examples,
        load_token,
        serve,
    )

    try:
        token = load_token(token_env, token_file)
        check_bind(host, token)
        settings = ServeSettings(
            host=host,
            port=port,
            deadline=deadline,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            max_active=max_active,
            max_pending=max_pending,
            group_size=group_size,
            group_window=group_window,
            group_idle=group_idle,
            fallback=fallback,
            fallback_score=fallback_score,
            access_log=access_log,
            end_markers=END_MARKERS + tuple(end_marker or ()),
        )
        spec = reward_spec(
            reward,
            judge,
            llm_options(concurrency, timeout, retries, cache),
            config_file=reward_config,
            assignments=assignments,
            no_resonation=no_resonation,
            no_expression=no_expression,
            no_reception=no_reception,
            no_bystander=no_bystander,
        )
        examples = load_examples(data or [])
    except ImportError as exc:
        raise fail(f"{exc}; install the serve extra: pip install 'attunement[serve]'") from None
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise fail(
            "attune serve needs starlette and uvicorn: pip install 'attunement[serve]'"
        ) from None
    auth = "bearer token required" if token else "no token (loopback only)"
    console.print(
        f"serving {spec.reward} judged by {spec.judge} on http://{host}:{port} "
        f"({auth}; {len(examples)} examples; deadline {deadline:.0f} s)",
        highlight=False,
        soft_wrap=True,
    )
    serve(spec, settings, token=token, examples=examples)
