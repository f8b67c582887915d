"""verl integration: compute_score called exactly as verl calls it, the per-process
group cache (criteria once per group, fresh per generation), the fixed key set on
success and failure, the fallback, and the parquet export round trip."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from scale_helpers import ScriptedJudge, bench_batch
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.integrations import verl
from attunement.integrations.groups import GroupTracker, ScoringPolicy
from attunement.integrations.scorer import ReplyScorer
from attunement.jsonl import write_jsonl
from attunement.judging import load_reward
from attunement.records import Reply

pytest.importorskip("pyarrow")

SOLUTION = "# Analysis\nShe feels unseen at work.\n\n# Response\nThat sounds exhausting, and it makes sense."


def _verl_async_wrapper(raw_fn, reward_kwargs):
    """How verl wraps an async custom reward (verl/trainer/ppo/reward.py,
    get_custom_reward_fn): a partial over a coroutine function that merges the
    config's reward_kwargs into the call's keyword arguments."""

    async def call(fn, extra, *args, **kwargs):
        return await fn(*args, **{**kwargs, **extra})

    return functools.partial(call, raw_fn, reward_kwargs)


def _verl_sync_wrapper(raw_fn, reward_kwargs):
    def call(fn, extra, *args, **kwargs):
        return fn(*args, **{**kwargs, **extra})

    return functools.partial(call, raw_fn, reward_kwargs)


@pytest.fixture()
def rows():
    examples, _ = bench_batch(3, 1)
    return examples, asyncio.run(verl.verl_rows(examples))


@pytest.fixture(autouse=True)
def _close_background():
    yield
    verl.shutdown()


def kwargs_for(judge: ScriptedJudge, **more):
    return {
        "reward": "peregrm@2",
        "judge": judge.spec,
        "overrides": {"output": "text"},
        "group_size": 8,
        **more,
    }


def verl_call(row, solution=SOLUTION):
    """The keyword arguments verl's naive/dapo/rate_limited managers pass."""
    return {
        "data_source": row["data_source"],
        "solution_str": solution,
        "ground_truth": row["reward_model"]["ground_truth"],
        "extra_info": row["extra_info"],
    }


def test_async_compute_score_through_verls_wrapper_groups_eight_calls(rows):
    _, verl_rows = rows
    judge = ScriptedJudge()
    fn = _verl_async_wrapper(verl.compute_score_async, kwargs_for(judge))
    assert inspect.iscoroutinefunction(fn)  # verl awaits it on its loop instead of a thread

    async def step():
        # verl's reward loop adds these when a reward model is enabled, and
        # mutates extra_info in place (num_turns, rollout_reward_scores)
        calls = []
        for _ in range(8):
            info = dict(verl_rows[0]["extra_info"], num_turns=None, rollout_reward_scores={})
            calls.append(
                fn(
                    **verl_call(verl_rows[0]) | {"extra_info": info},
                    reward_router_address=None,
                    reward_model_tokenizer=None,
                )
            )
        return await asyncio.gather(*calls)

    async def two_steps():
        first = await step()
        after_first = judge.criteria_samples
        second = await step()
        await verl.aclose()
        return first, after_first, second

    first, after_first, second = asyncio.run(two_steps())
    # 3 dimensions x k=2 criteria samples, written once for the 8 replies
    assert after_first == 3 * 2
    assert judge.criteria_samples == 2 * 3 * 2  # the next step drew fresh criteria
    assert {r["attune/criteria_round"] for r in first} == {1.0}
    assert {r["attune/criteria_round"] for r in second} == {2.0}
    assert all(r["attune/unscorable"] == 0.0 and 0 < r["score"] <= 1 for r in first)


def test_sync_compute_score_from_verls_thread_pool_shares_the_group(rows):
    _, verl_rows = rows
    judge = ScriptedJudge(delay=0.01)
    fn = _verl_sync_wrapper(verl.compute_score, kwargs_for(judge))
    assert not inspect.iscoroutinefunction(fn)
    before = copy.deepcopy(verl_rows[1]["extra_info"])
    with ThreadPoolExecutor(max_workers=8) as pool:  # verl: loop.run_in_executor(None, ...)
        results = list(pool.map(lambda _: fn(**verl_call(verl_rows[1])), range(8)))
    assert judge.criteria_samples == 3 * 2
    assert len({r["attune/criteria_round"] for r in results}) == 1
    assert verl_rows[1]["extra_info"] == before  # never mutates verl's shared extra_info


def test_key_set_is_identical_on_success_failure_and_timeout(rows):
    _, verl_rows = rows
    good, bad, slow = ScriptedJudge(), ScriptedJudge(), ScriptedJudge(delay=2.0)
    bad.garble = True

    async def run():
        ok = await verl.compute_score_async(**verl_call(verl_rows[0]), **kwargs_for(good))
        failed = await verl.compute_score_async(**verl_call(verl_rows[0]), **kwargs_for(bad))
        late = await verl.compute_score_async(
            **verl_call(verl_rows[0]), **kwargs_for(slow, deadline=0.2)
        )
        await verl.aclose()
        return ok, failed, late

    ok, failed, late = asyncio.run(run())
    assert list(ok) == list(failed) == list(late)  # verl indexes every sample with the first's keys
    assert all(isinstance(v, float) for r in (ok, failed, late) for v in r.values())
    assert (
        failed["attune/unscorable"] == 1.0
        and late["attune/unscorable"] == 1.0
        and late["attune/timed_out"] == 1.0
    )
    assert ok["attune/unscorable"] == 0.0 and ok["score"] == ok["attune/reward"]
    # what was not judged is 0.0 in a row flagged unscorable; the score is the fallback
    assert failed["attune/reward"] == 0.0 and failed["attune/resonation"] == 0.0
    assert failed["score"] == 0.0 and late["score"] == 0.0  # no mate scored in these groups


def test_group_mean_fallback_gives_an_unscorable_reply_its_groups_mean():
    examples, replies = bench_batch(1, 3)
    judge = ScriptedJudge()
    reward = load_reward("peregrm", judge.model(), output="text")
    scorer = ReplyScorer(reward, ScoringPolicy(group_size=3))

    async def run():
        first = await scorer.score(examples[0], replies[:2])
        judge.garble = True
        [third] = await scorer.score(examples[0], replies[2:])
        return first, third

    first, third = asyncio.run(run())
    assert third.unscorable and third.fallback == "group_mean"
    assert third.score == pytest.approx(sum(o.score for o in first) / 2)
    constant = ReplyScorer(reward, ScoringPolicy(fallback="constant", fallback_score=-0.25))
    [o] = asyncio.run(constant.score(examples[0], [replies[0]]))
    assert o.unscorable and o.score == -0.25 and o.fallback == "constant"


def test_group_tracker_rounds_by_size_window_and_split():
    now = [0.0]
    tracker = GroupTracker(size=2, idle=5.0, window=10.0, max_groups=2, clock=lambda: now[0])
    assert [tracker.join("a").criteria_round for _ in range(5)] == [1, 1, 2, 2, 3]
    now[0] = 6.0  # no reply joined "a" for longer than group_idle
    assert tracker.join("a").criteria_round == 4
    now[0] = 10.0
    assert tracker.join("a").criteria_round == 4  # still open: joined 4 s ago
    tracker = GroupTracker(size=None, idle=5.0, window=10.0, max_groups=2, clock=lambda: now[0])
    now[0] = 0.0
    rounds = []
    for t in (0.0, 4.0, 8.0, 12.0):  # joined every 4 s: idle never hit, the window is
        now[0] = t
        rounds.append(tracker.join("a").criteria_round)
    assert rounds == [1, 1, 1, 2]
    assert tracker.join("val\x00a", fixed_round=0).criteria_round == 0
    tracker.join("b")
    assert len(tracker) == 2  # bounded: the least recently used group was evicted
    assert tracker.join("a").criteria_round == 1  # evicted, so it starts over


def test_validation_rows_use_criteria_round_zero():
    examples, replies = bench_batch(1, 2)
    judge = ScriptedJudge()
    scorer = ReplyScorer(load_reward("peregrm", judge.model(), output="text"), ScoringPolicy())
    outcomes = asyncio.run(scorer.score(examples[0], replies, split="test"))
    assert {o.criteria_round for o in outcomes} == {0}


def test_batch_variant_scores_each_example_as_one_group(rows):
    _, verl_rows = rows
    judge = ScriptedJudge()
    order = [0, 1, 0, 1, 0, 1]
    results = verl.compute_score_batch(
        data_sources=["attunement"] * 6,
        solution_strs=[SOLUTION] * 6,
        ground_truths=[verl_rows[i]["reward_model"]["ground_truth"] for i in order],
        extra_infos=[verl_rows[i]["extra_info"] for i in order],
        **kwargs_for(judge),
    )
    assert len(results) == 6 and all(r["attune/unscorable"] == 0.0 for r in results)
    assert judge.criteria_samples == 2 * 3 * 2  # two examples, criteria once each


def test_bad_settings_and_rows_fail_loudly(rows):
    _, verl_rows = rows
    with pytest.raises(ValueError, match="dedline"):
        verl.compute_score(**verl_call(verl_rows[0]), judge="local", dedline=5)
    with pytest.raises(ValueError, match="attune export verl"):
        verl.compute_score(
            data_source="x",
            solution_str="hi",
            ground_truth="",
            extra_info={"index": 0},
            judge="local",
        )
    with pytest.raises(ValueError, match="unknown reward"):
        verl.compute_score(**verl_call(verl_rows[0]), reward="nope", judge="local")


def test_parquet_round_trip_and_columns(tmp_path):
    import pyarrow.parquet as pq

    examples, _ = bench_batch(4, 1)
    report = verl.export_verl(examples, tmp_path / "train.parquet", memory_mode="none")
    assert report.rows == 4 and report.manifest.is_file()
    assert verl.examples_from_verl(report.out) == examples
    table = pq.read_table(report.out)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = table.to_pylist()[2]
    assert row["reward_model"] == {"style": "model", "ground_truth": examples[2].example_id}
    assert row["extra_info"]["index"] == 2 and row["extra_info"]["split"] == "train"
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert examples[2].query.strip() in row["prompt"][1]["content"]
    # memory_mode none: the policy's prompt has no memories, the judge's example keeps them
    assert examples[2].memories[0].value not in row["prompt"][1]["content"]
    assert verl.examples_from_verl(report.out)[2].memories == examples[2].memories


def test_cli_export_verl_and_openrlhf(tmp_path):
    examples, _ = bench_batch(3, 1)
    write_jsonl(tmp_path / "train.jsonl", examples)
    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        [
            "export",
            "verl",
            "--data",
            str(tmp_path / "train.jsonl"),
            "--out",
            str(tmp_path / "verl"),
            "--split",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    assert verl.examples_from_verl(tmp_path / "verl" / "test.parquet") == examples
    result = runner.invoke(
        build_app(),
        [
            "export",
            "openrlhf",
            "--data",
            str(tmp_path / "train.jsonl"),
            "--out",
            str(tmp_path / "orl"),
            "--server-url",
            "http://judge:8000",
            "--token-file",
            "/secrets/attune.token",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    lines = (tmp_path / "orl" / "prompts.jsonl").read_text().splitlines()
    assert [json.loads(x)["label"] for x in lines] == [e.example_id for e in examples]
    source = (tmp_path / "orl" / "reward_func.py").read_text()
    assert "RemoteReward('http://judge:8000', token_file='/secrets/attune.token')" in source
    compile(source, "reward_func.py", "exec")


def test_reply_from_solution_splits_the_analysis():
    examples, _ = bench_batch(1, 1)
    reply = verl.reply_from_solution(examples[0], SOLUTION)
    assert isinstance(reply, Reply) and reply.format_ok
    assert reply.analysis.startswith("She feels") and reply.response.startswith("That sounds")


def test_a_deadline_on_one_reply_does_not_cancel_its_groups_criteria():
    examples, replies = bench_batch(1, 2)
    judge = ScriptedJudge(delay=0.2)
    scorer = ReplyScorer(
        load_reward("peregrm", judge.model(), output="text"), ScoringPolicy(group_size=2)
    )

    async def run():
        return await asyncio.gather(
            scorer.score(examples[0], replies[:1], deadline=0.05),
            scorer.score(examples[0], replies[1:], deadline=30.0),
        )

    [[late], [mate]] = asyncio.run(run())
    assert late.timed_out and late.unscorable
    assert not mate.unscorable and mate.criteria_round == late.criteria_round
    assert judge.criteria_samples == 3  # the criteria request was not cancelled and redone


def test_the_scorer_shows_training_calls_to_the_hacking_monitor(tmp_path):
    """Per-sample trainers get the monitor too: every training call is observed, a
    report is due every ``monitor.every`` replies and lands in ``monitor_log``;
    validation calls are never observed."""
    from attunement.training.monitor import MonitorSettings

    examples, replies = bench_batch(1, 4)
    log = tmp_path / "monitor.jsonl"
    policy = ScoringPolicy(monitor=MonitorSettings(every=4, samples=0), monitor_log=log)
    scorer = ReplyScorer(load_reward("peregrm", ScriptedJudge().model(), output="text"), policy)
    assert scorer.monitor is not None

    async def run():
        await scorer.score(examples[0], replies, split="test")
        seen_after_validation = scorer.monitor.seen
        await scorer.score(examples[0], replies[:2])
        assert not scorer.monitor.reports  # 2 of 4 replies: not due yet
        await scorer.score(examples[0], replies[2:])
        await scorer.monitor.drain()
        return seen_after_validation

    assert asyncio.run(run()) == 0
    assert scorer.monitor.seen == 4 and len(scorer.monitor.reports) == 1
    [row] = [json.loads(line) for line in log.read_text().splitlines()]
    assert row["replies_seen"] == 4 and "warnings" in row
    off = ReplyScorer(scorer.reward, ScoringPolicy(monitor=MonitorSettings(every=0)))
    assert off.monitor is None
