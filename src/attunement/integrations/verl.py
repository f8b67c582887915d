"""attunement's rewards in verl: ``compute_score`` and the parquet verl trains on.

verl (``reward.custom_reward_function.path`` / ``.name``) calls a reward
function once per sample with the decoded response only::

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...,
                  **reward_kwargs)

so everything the judges need (persona, memories, situation, query, example
id) travels in ``extra_info``; :func:`export_verl` writes it there, as the
example's JSON (one string column: parquet struct columns would unify the
schemas of all rows, filling absent fields with nulls and failing on fields
whose type differs between rows). ``reward_kwargs`` from verl's config are
the settings (:class:`VerlSettings`): reward, judge, deadline, grouping.

Four entry points, pick by reward manager (docs/scale-out.md):

- :func:`compute_score_async`: ``naive``, ``dapo``, ``rate_limited``; verl
  awaits a coroutine function directly on its worker's event loop and runs
  the samples of its chunk concurrently, so this is the one to use;
- :func:`compute_score`: the same, synchronous; verl runs it in a thread pool,
  and it hands the work to one background event loop per process;
- :func:`compute_score_batch_async` / :func:`compute_score_batch`: the
  ``batch`` manager's plural form (``data_sources``, ``solution_strs``,
  ``ground_truths``, ``extra_infos``), scoring each example's replies as one
  group.

Each returns a dict of floats with the same keys for every sample, failures
included (:func:`attunement.integrations.groups.metric_keys`): ``score`` is
what verl trains on (the reward, or the documented fallback for an unscorable
reply, flagged by ``unscorable=1``). Per-sample calls are regrouped by example
in a bounded, per-process group cache so PereGRM writes criteria once per
group (:class:`~attunement.integrations.groups.ReplyScorer`).

State is per process and built at the first call, never at import: one
judge and reward per (settings, event loop), kept until the process ends or
:func:`shutdown` / :func:`aclose` is called.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import threading
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, ValidationError

from attunement.integrations.groups import ReplyScorer, ScoringPolicy
from attunement.judging.registry import RewardSpec
from attunement.llm import LLMOptions
from attunement.policy import ModelFreeMemoryMode, PromptContext, policy_prompts
from attunement.policy.prompting import parse_reply, reply_prompt_version
from attunement.records import Example, Reply

T = TypeVar("T")

#: keyword arguments verl's reward loop adds when a reward model is enabled (unused here)
VERL_EXTRA_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})
DATA_SOURCE = "attunement"
ABILITY = "empathy"
ExportMemoryMode = ModelFreeMemoryMode
#: the extra_info field holding the example's JSON
EXAMPLE_FIELD = "example"


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

    def spec(self) -> RewardSpec:
        overrides: dict[str, Any] = {}
        if self.reward_config is not None:
            from attunement.configfile import read_config_file

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
        return VerlSettings.model_validate(_plain(given))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(settings)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"attunement verl reward_kwargs: {problems}") from None


def _plain(value: Any) -> Any:
    """OmegaConf containers and numpy scalars as plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    return value


# --------------------------------------------------------------------------- one sample


def example_from_extra_info(extra_info: Mapping[str, Any] | None) -> tuple[Example, str | None]:
    """The example and split a verl row carries in ``extra_info``.

    ``extra_info["example"]`` is the example's JSON (as :func:`export_verl`
    writes it) or an object with the same fields.
    """
    if not extra_info or EXAMPLE_FIELD not in extra_info:
        seen = sorted(extra_info) if extra_info else []
        raise ValueError(
            f"extra_info has no {EXAMPLE_FIELD!r} field (it holds {seen}); write "
            "the parquet with `attune export verl`, which stores the example there"
        )
    raw = extra_info[EXAMPLE_FIELD]
    try:
        if isinstance(raw, (str, bytes)):
            example = Example.model_validate_json(raw)
        else:
            example = Example.model_validate(_plain(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(example)"
        raise ValueError(f"extra_info.{EXAMPLE_FIELD}: {where}: {first['msg']}") from None
    split = extra_info.get("split")
    return example, (str(split) if split is not None else None)


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
            stack = AsyncExitStack()
            try:
                reward = await stack.enter_async_context(settings.spec().open())
            except BaseException:
                await stack.aclose()
                raise
            policy = ScoringPolicy.model_validate(
                settings.model_dump(include=set(ScoringPolicy.model_fields))
            )
            found = state.scorers[key] = (ReplyScorer(reward, policy), stack)
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
    """Close the synchronous entry points' judges and stop their thread."""
    global _background
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


# --------------------------------------------------------------------------- parquet


@dataclass(frozen=True)
class ExportReport:
    out: Path
    manifest: Path
    rows: int
    split: str
    memory_mode: str


def _parquet_schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(message)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("example_id", pa.string()),
                        ("split", pa.string()),
                        ("index", pa.int64()),
                        ("memory_mode", pa.string()),
                        ("memory_source_user", pa.string()),
                        (EXAMPLE_FIELD, pa.string()),
                    ]
                ),
            ),
        ]
    )


async def verl_rows(
    examples: Sequence[Example],
    *,
    split: str = "train",
    memory_mode: ExportMemoryMode = "full",
    data_source: str = DATA_SOURCE,
    ability: str = ABILITY,
    pool: Sequence[Example] | None = None,
    seed: int = 0,
    k: int = 3,
    persona: bool = True,
    situation: bool = True,
) -> list[dict[str, Any]]:
    """One verl row per example: the reply prompt the policy answers, the example in
    ``extra_info``, the example id as ``reward_model.ground_truth``.

    ``memory_mode`` chooses the memories shown to the policy (as in ``attune
    generate``); the judges always see the example's own user.
    """
    seen: set[str] = set()
    for e in examples:
        if e.example_id in seen:
            raise ValueError(f"example id {e.example_id!r} appears twice")
        seen.add(e.example_id)
    context = PromptContext(
        memory_mode=memory_mode,
        persona=persona,
        situation=situation,
        context_of="example",
        seed=seed,
        k=k,
    )
    rows = []
    for index, prompt in enumerate(await policy_prompts(examples, context, pool=pool)):
        example, view, messages = prompt.example, prompt.view, prompt.messages
        rows.append(
            {
                "data_source": data_source,
                "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
                "ability": ability,
                "reward_model": {"style": "model", "ground_truth": example.example_id},
                "extra_info": {
                    "example_id": example.example_id,
                    "split": split,
                    "index": index,
                    "memory_mode": memory_mode,
                    "memory_source_user": view.source_user_id,
                    EXAMPLE_FIELD: example.model_dump_json(exclude_defaults=True),
                },
            }
        )
    return rows


def write_parquet(rows: Sequence[Mapping[str, Any]], out: str | Path) -> Path:
    """Write verl rows to ``out`` atomically (a temporary file renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=_parquet_schema())
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_verl(
    examples: Sequence[Example],
    out: str | Path,
    *,
    split: str = "train",
    memory_mode: ExportMemoryMode = "full",
    data_source: str = DATA_SOURCE,
    ability: str = ABILITY,
    pool: Sequence[Example] | None = None,
    seed: int = 0,
    k: int = 3,
    source: str | None = None,
) -> ExportReport:
    """Write ``examples`` as a verl parquet file and its manifest (``<out>.manifest.json``)."""
    from attunement.jsonl import manifest_path, write_manifest

    rows = asyncio.run(
        verl_rows(
            examples,
            split=split,
            memory_mode=memory_mode,
            data_source=data_source,
            ability=ability,
            pool=pool,
            seed=seed,
            k=k,
        )
    )
    path = write_parquet(rows, out)
    manifest = write_manifest(
        manifest_path(path),
        command="export verl",
        source=source,
        rows=len(rows),
        split=split,
        memory_mode=memory_mode,
        data_source=data_source,
        ability=ability,
        seed=seed,
        k=k,
        prompt={"policy_reply": reply_prompt_version()},
    )
    return ExportReport(
        out=path, manifest=manifest, rows=len(rows), split=split, memory_mode=memory_mode
    )


def read_verl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a verl parquet file, as plain dicts."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def examples_from_verl(path: str | Path) -> list[Example]:
    """The examples a verl parquet file carries, in row order (the round trip)."""
    out = []
    for i, row in enumerate(read_verl(path)):
        try:
            example, _ = example_from_extra_info(row.get("extra_info"))
        except ValueError as exc:
            raise ValueError(f"{path}: row {i}: {exc}") from None
        out.append(example)
    return out
