"""attunement's rewards in verl's reward workers: ``compute_score``.

verl (``reward.custom_reward_function.path`` / ``.name``) calls a reward
function once per sample with the decoded response only::

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...,
                  **reward_kwargs)

so everything the judges need travels in the row's ``extra_info``, written by
:func:`export_verl` (:mod:`attunement.integrations.verl_data`, the parquet
side; its names are importable from here as well, the module verl's config
points at). ``reward_kwargs`` from verl's config are the settings
(:class:`VerlSettings`): reward, judge, deadline, grouping.

Four entry points, pick by reward manager (docs/scale-out.md):

- :func:`compute_score_async`: ``naive``, ``dapo``, ``gdpo``, ``rate_limited``;
  verl awaits a coroutine function directly on its worker's event loop, one
  task per sample, so this is the one to use;
- :func:`compute_score`: the same, synchronous; verl runs it in a thread pool
  (``remote`` runs it in extra Ray actors), and it hands the work to one
  background event loop per process;
- :func:`compute_score_batch_async` / :func:`compute_score_batch`: the plural
  form (``data_sources``, ``solution_strs``, ``ground_truths``,
  ``extra_infos``) of verl's legacy worker-side ``batch`` manager (not a
  reward-loop manager in verl 0.9.1), scoring each example's replies as one
  group.

Each returns a dict of floats with the same keys for every sample, failures
included (named in one place: :mod:`attunement.integrations.outcomes`): ``score`` is
what verl trains on (the reward, or the documented fallback for an unscorable
reply, flagged by ``attune/unscorable=1``); every other key starts with
``attune/`` so that none collides with verl's own columns.

verl hands each finished sample to a reward worker picked at random, so the
replies of one prompt are judged in several processes. The groups, their
criteria rounds and the criteria themselves are therefore kept by one
coordinator for the whole run (:mod:`attunement.integrations.coordinator`):
with ``coordinator="auto"`` (the default) a named Ray actor when the worker
runs under Ray, as verl's workers do, else one per process.

The judge and reward are built at the first call, never at import: one per
(settings, event loop), kept until the process ends or :func:`shutdown` /
:func:`aclose` is called.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import sys
import threading
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from attunement.configfile import read_config_file
from attunement.integrations.coordinator import Coordinator, LocalCoordinator
from attunement.integrations.groups import ScoringPolicy
from attunement.integrations.ray_coordinator import ray_coordinator
from attunement.integrations.scorer import ReplyScorer
from attunement.integrations.shared_judge import open_shared_reward
from attunement.integrations.verl_data import (
    ABILITY,
    DATA_SOURCE,
    EXAMPLE_FIELD,
    ExportMemoryMode,
    ExportReport,
    example_from_extra_info,
    examples_from_verl,
    export_verl,
    plain,
    read_verl,
    verl_rows,
    write_parquet,
)
from attunement.judging import RewardSpec
from attunement.llm import LLMOptions
from attunement.policy.prompting import parse_reply
from attunement.records import Example, Reply

__all__ = [
    "ABILITY",
    "DATA_SOURCE",
    "EXAMPLE_FIELD",
    "ExportMemoryMode",
    "ExportReport",
    "VerlSettings",
    "aclose",
    "compute_score",
    "compute_score_async",
    "compute_score_batch",
    "compute_score_batch_async",
    "example_from_extra_info",
    "examples_from_verl",
    "export_verl",
    "read_verl",
    "reply_from_solution",
    "settings_from_kwargs",
    "shutdown",
    "verl_rows",
    "write_parquet",
]

T = TypeVar("T")

#: keyword arguments verl's reward loop adds when a reward model is enabled (unused here)
VERL_EXTRA_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})

#: where the groups of a run are kept: a named Ray actor, this process, or the
#: actor when Ray is running (as in verl's workers) and this process otherwise
CoordinatorKind = Literal["auto", "ray", "local"]


class VerlSettings(ScoringPolicy):
    """What verl's ``reward_kwargs`` may set (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    reward: str = Field("peregrm", description="perm | peregrm[@k] | other registered kinds")
    judge: str = Field(
        "local", description="judge model spec, e.g. openai:http://judge:8000/v1#Qwen3-4B-Instruct"
    )
    reward_config: Path | None = Field(
        None, description="JSON/TOML file of reward config fields (read on the worker)"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="reward config fields; win over reward_config"
    )
    concurrency: int = Field(8, ge=1, description="judge requests in flight per worker process")
    timeout: float = Field(
        120.0, gt=0, description="seconds per judge call, retries included (LLMOptions.timeout)"
    )
    retries: int = Field(4, ge=0, description="retries of a judge request (timeouts, 429, 5xx)")
    cache: Path | None = Field(None, description="sqlite completion cache (per node)")
    api_key_env: str | None = Field(
        None,
        description="environment variable with the judge server's API key, sent to any URL; "
        "unset: OPENAI_API_KEY, sent to https URLs only (see docs/llm.md)",
    )
    coordinator: CoordinatorKind = Field(
        "auto",
        description="where groups and criteria are kept: a named Ray actor shared by every "
        "reward worker (ray), this process (local), or ray when Ray is running (auto)",
    )

    def uses_ray(self) -> bool:
        """Whether the groups live in the Ray actor (Ray is looked at, not imported)."""
        if self.coordinator != "auto":
            return self.coordinator == "ray"
        ray = sys.modules.get("ray")
        return ray is not None and bool(ray.is_initialized())

    def spec(self) -> RewardSpec:
        overrides: dict[str, Any] = {}
        if self.reward_config is not None:
            overrides.update(read_config_file(self.reward_config))
        overrides.update(self.overrides)
        options = LLMOptions(
            concurrency=self.concurrency,
            timeout=self.timeout,
            max_retries=self.retries,
            cache=self.cache,
            api_key_env=self.api_key_env,
        )
        spec = RewardSpec(
            reward=self.reward, judge=self.judge, options=options, overrides=overrides
        )
        spec.config()
        return spec


def settings_from_kwargs(kwargs: Mapping[str, Any]) -> VerlSettings:
    """Validate verl's ``reward_kwargs`` (verl's own extra kwargs are ignored)."""
    given = {k: v for k, v in kwargs.items() if k not in VERL_EXTRA_KWARGS}
    try:
        return VerlSettings.model_validate(plain(given))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(settings)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"attunement verl reward_kwargs: {problems}") from None


_reply_numbers = itertools.count()


def reply_from_solution(example: Example, solution_str: str) -> Reply:
    """The policy's decoded response as a :class:`Reply` (analysis split off)."""
    parsed = parse_reply(solution_str or "")
    return Reply(
        example_id=example.example_id,
        reply_id=f"{example.example_id}#verl-{next(_reply_numbers)}",
        response=parsed.response,
        analysis=parsed.analysis,
        raw=solution_str or "",
        format_ok=parsed.format_ok,
        policy="verl",
    )


# --------------------------------------------------------------------------- per-process state


@dataclass
class _LoopState:
    lock: asyncio.Lock
    scorers: dict[str, tuple[ReplyScorer, AsyncExitStack]] = field(default_factory=dict)


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
    weakref.WeakKeyDictionary()
)
_states_lock = threading.Lock()


def _loop_state() -> _LoopState:
    loop = asyncio.get_running_loop()
    with _states_lock:
        state = _states.get(loop)
        if state is None:
            state = _states[loop] = _LoopState(lock=asyncio.Lock())
        return state


_coordinators: dict[str, Coordinator] = {}
_coordinators_lock = threading.Lock()


def coordinator_for(settings: VerlSettings) -> Coordinator:
    """The run's coordinator for these settings: the Ray actor, or this process's
    (one per process, shared by every event loop in it)."""
    policy = settings.scoring_policy()
    scope = settings.spec().model_dump_json(exclude={"options"})
    key = f"{settings.uses_ray()}|{scope}|{policy.model_dump_json()}"
    with _coordinators_lock:
        found = _coordinators.get(key)
        if found is None:
            found = _coordinators[key] = (
                ray_coordinator(policy, scope)
                if settings.uses_ray()
                else LocalCoordinator.for_policy(policy)
            )
        return found


async def scorer_for(settings: VerlSettings) -> ReplyScorer:
    """The scorer of these settings on the running loop (judge opened at first use)."""
    state = _loop_state()
    key = settings.model_dump_json()
    found = state.scorers.get(key)
    if found is not None:
        return found[0]
    async with state.lock:
        found = state.scorers.get(key)
        if found is None:
            coordinator = coordinator_for(settings)
            stack = AsyncExitStack()
            try:
                reward, judge = await stack.enter_async_context(
                    open_shared_reward(settings.spec(), coordinator, wait=settings.deadline)
                )
            except BaseException:
                await stack.aclose()
                raise
            scorer = ReplyScorer(
                reward, settings.scoring_policy(), coordinator=coordinator, shared=judge
            )
            found = state.scorers[key] = (scorer, stack)
    return found[0]


async def aclose() -> None:
    """Close the judges opened on the running loop."""
    state = _loop_state()
    async with state.lock:
        entries = list(state.scorers.values())
        state.scorers.clear()
    for _, stack in entries:
        await stack.aclose()


class _BackgroundLoop:
    """One event loop in a daemon thread, where the synchronous entry points run."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="attune-verl-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.submit(aclose()).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


_background: _BackgroundLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> _BackgroundLoop:
    global _background
    with _background_lock:
        if _background is None or _background.pid != os.getpid():  # new, or inherited by fork
            _background = _BackgroundLoop()
        return _background


def shutdown() -> None:
    """Close the synchronous entry points' judges, stop their thread, and forget this
    process's coordinators (a Ray coordinator's actor lives on with its creator)."""
    global _background
    with _coordinators_lock:
        _coordinators.clear()
    with _background_lock:
        background, _background = _background, None
    if background is not None and background.pid == os.getpid():
        background.stop()


def _run_sync(coro: Coroutine[Any, Any, T], settings: VerlSettings) -> T:
    future = _background_loop().submit(coro)
    try:
        # the deadline inside answers first; this only guards against a wedged loop
        return future.result(timeout=settings.deadline + 60)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(
            f"attunement reward: no answer {settings.deadline + 60:.0f} s after "
            "the call although the deadline had passed (event loop blocked?)"
        ) from None


# --------------------------------------------------------------------------- entry points


async def compute_score_async(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one decoded response; verl's per-sample reward call (async).

    ``kwargs`` are verl's ``reward_kwargs`` (:class:`VerlSettings`). Raises
    ``ValueError`` for bad settings or a row without its example (a data error
    that must stop training); judge failures do not raise: they give the
    fallback score with ``unscorable=1``.
    """
    settings = settings_from_kwargs(kwargs)
    example, split = example_from_extra_info(extra_info)
    scorer = await scorer_for(settings)
    reply = reply_from_solution(example, solution_str)
    [outcome] = await scorer.score(example, [reply], split=split)
    return outcome.metrics(scorer.keys)


def compute_score(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """:func:`compute_score_async`, callable from any thread (verl runs sync
    reward functions in a thread pool)."""
    settings = settings_from_kwargs(kwargs)
    return _run_sync(
        compute_score_async(data_source, solution_str, ground_truth, extra_info, **kwargs), settings
    )


async def compute_score_batch_async(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None],
    **kwargs: Any,
) -> list[dict[str, float]]:
    """The ``batch`` manager's call: many samples at once, one result per sample.

    Samples of the same example (and split) are scored as one group.
    """
    if not len(solution_strs) == len(extra_infos):
        raise ValueError(f"{len(solution_strs)} solution_strs but {len(extra_infos)} extra_infos")
    settings = settings_from_kwargs(kwargs)
    scorer = await scorer_for(settings)
    groups: dict[tuple[str, str | None], tuple[Example, list[Reply]]] = {}
    order: list[str] = []
    for solution, info in zip(solution_strs, extra_infos, strict=True):
        example, split = example_from_extra_info(info)
        key = (example.example_id, split)
        if key not in groups:
            groups[key] = (example, [])
        reply = reply_from_solution(groups[key][0], solution)
        groups[key][1].append(reply)
        order.append(reply.reply_id)
    results = await asyncio.gather(
        *(
            scorer.score(example, replies, split=split)
            for (_, split), (example, replies) in groups.items()
        )
    )
    by_reply = {o.reply_id: o for outcomes in results for o in outcomes}
    return [by_reply[rid].metrics(scorer.keys) for rid in order]


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None],
    **kwargs: Any,
) -> list[dict[str, float]]:
    """:func:`compute_score_batch_async`, callable from any thread."""
    settings = settings_from_kwargs(kwargs)
    return _run_sync(
        compute_score_batch_async(
            data_sources, solution_strs, ground_truths, extra_infos, **kwargs
        ),
        settings,
    )
