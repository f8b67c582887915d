"""GRPOReward, the TRL reward function, without a trainer: groups, None for unscorable
replies, the deadline, the judge bound, criteria rounds, metrics and records."""

from __future__ import annotations

import asyncio
import doctest
import json
import math
from types import SimpleNamespace

import pytest
from train_scripted import JSON_JUDGE, examples, install, judged_response, kind_of, scripted_judge

from attunement.judging import RewardSpec
from attunement.llm import LLMError, LLMOptions, Step
from attunement.training import reward as reward_module
from attunement.training.reward import (
    GRPOReward,
    JudgeUnavailableError,
    check_examples,
    metric_keys,
)

G = 3
#: the examples every reward of these tests looks its rows up in
EXAMPLES = examples(6)


def batch(n_groups: int = 2, texts=None):
    """TRL's keyword arguments for ``n_groups`` prompts x G completions."""
    exs = examples(n_groups)
    rows = [ex for ex in exs for _ in range(G)]
    completions = [
        [
            {
                "role": "assistant",
                "content": texts[i]
                if texts
                else f"# Analysis\nShe feels alone ({i}).\n\n# Response\nReply number {i}.",
            }
        ]
        for i in range(len(rows))
    ]
    return {
        "prompts": [[{"role": "user", "content": ex.query}] for ex in rows],
        "completions": completions,
        "completion_ids": [[7] * (5 + i) for i in range(len(rows))],
        "example_id": [ex.example_id for ex in rows],
    }


def spec(reward: str = "perm", **overrides) -> RewardSpec:
    json_judge = {"output": "json"} if reward.startswith("rlpa") else JSON_JUDGE
    return RewardSpec(reward=reward, judge="scripted", overrides={**json_judge, **overrides})


class Logged:
    def __init__(self):
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def metric(self, name, value):
        self.metrics.setdefault(name, []).append(value)

    def column(self, name, values):
        self.extra.setdefault(name, []).extend(values)


def call(reward: GRPOReward, kwargs: dict, step: int = 0, log: Logged | None = None):
    async def go():
        try:
            return await reward(
                **kwargs,
                trainer_state=SimpleNamespace(global_step=step),
                log_metric=log.metric if log else None,
                log_extra=log.column if log else None,
            )
        finally:
            await reward.aclose()

    return asyncio.run(go())


def test_each_group_is_scored_together_with_real_token_counts(monkeypatch):
    judge = scripted_judge()
    install(judge)
    seen = []
    real_score = None

    async def spy(self, example, replies, *, criteria_round=0):
        seen.append(
            (
                example.example_id,
                [r.reply_id for r in replies],
                [r.completion_tokens for r in replies],
                criteria_round,
            )
        )
        return await real_score(self, example, replies, criteria_round=criteria_round)

    from attunement.judging.base import JudgeReward

    real_score = JudgeReward.score
    monkeypatch.setattr(JudgeReward, "score", spy)
    out = call(GRPOReward(spec(), num_generations=G, examples=EXAMPLES), batch(2), step=7)
    assert seen == [
        ("ex0", ["ex0:step7:0", "ex0:step7:1", "ex0:step7:2"], [5, 6, 7], 7),
        ("ex1", ["ex1:step7:0", "ex1:step7:1", "ex1:step7:2"], [8, 9, 10], 7),
    ]
    assert len(out) == 6 and all(isinstance(r, float) for r in out)
    assert len(set(out)) > 1  # the scripted judge spreads scores, so GRPO has a signal


def test_completions_are_split_by_the_policy_parser():
    judge = scripted_judge()
    install(judge)
    call(GRPOReward(spec(), num_generations=G, examples=EXAMPLES), batch(1))
    judged = {judged_response(c) for c in judge.calls if judged_response(c) is not None}
    assert judged == {"Reply number 0.", "Reply number 1.", "Reply number 2."}
    analyses = [c.messages[-1][1] for c in judge.calls if "<analysis>" in c.messages[-1][1]]
    assert analyses and all("She feels alone" in a for a in analyses)  # PERM resonation


def test_length_penalty_counts_with_the_given_token_counter():
    install(scripted_judge())
    counted = []

    def counter(text: str) -> int:
        counted.append(text)
        return 100

    reward = GRPOReward(
        spec("perm", length_limit=90, length_coef=0.01, length_on="response"),
        num_generations=G,
        examples=EXAMPLES,
        token_counter=counter,
        record=None,
    )
    log = Logged()
    call(reward, batch(1), log=log)
    assert counted == ["Reply number 0.", "Reply number 1.", "Reply number 2."]
    assert log.metrics["rewards/perm/terms/length_penalty"] == [pytest.approx(-0.1)]


@pytest.mark.parametrize("layout", ["split", "short"])
def test_a_batch_that_splits_a_group_is_refused(layout):
    install(scripted_judge())
    kwargs = batch(2)
    if layout == "split":  # ex0 ex0 ex1 | ex0 ex1 ex1: a group across two slices
        order = [0, 1, 3, 2, 4, 5]
        kwargs = {k: [v[i] for i in order] for k, v in kwargs.items()}
        match = "contiguous"
    else:
        kwargs = {k: v[:5] for k, v in kwargs.items()}
        match = "not a multiple"
    with pytest.raises(ValueError, match=match):
        call(GRPOReward(spec(), num_generations=G, examples=EXAMPLES), kwargs)


def test_unscorable_replies_are_none_counted_and_logged():
    def fail(request):
        if judged_response(request) == "Reply number 1.":
            return LLMError("judge overloaded")
        return None

    install(scripted_judge(fail))
    log = Logged()
    reward = GRPOReward(spec(), num_generations=G, examples=EXAMPLES)
    out = call(reward, batch(1), log=log)
    assert out[1] is None and out[0] is not None and out[2] is not None
    assert log.metrics["rewards/perm/unscorable_frac"] == [pytest.approx(1 / 3)]
    assert log.metrics["rewards/perm/judge_error_frac"][0] > 0
    assert "no valid judge sample" in log.extra["perm/unscorable"][1]
    assert "judge overloaded" in log.extra["perm/unscorable"][1]
    assert log.extra["perm/unscorable"][0] is None


def test_every_step_logs_the_same_keys_whatever_happens():
    install(scripted_judge())
    good = Logged()
    call(GRPOReward(spec("peregrm"), num_generations=G, examples=EXAMPLES), batch(2), log=good)
    install(scripted_judge(lambda request: LLMError("down")))
    bad = Logged()
    call(
        GRPOReward(spec("peregrm"), num_generations=G, examples=EXAMPLES, abort_after=0),
        batch(2),
        log=bad,
    )
    assert set(good.metrics) == set(bad.metrics) == set(metric_keys(spec("peregrm")))
    assert {
        "rewards/peregrm/resonation",
        "rewards/peregrm/expression",
        "rewards/peregrm/reception",
        "rewards/peregrm/bystander",
    } <= set(good.metrics)
    assert all(len(v) == 1 for v in good.metrics.values())
    assert bad.metrics["rewards/peregrm/unscorable_frac"] == [1.0]
    # no reply was scored on it: NaN (TRL logs null), never a made-up value
    assert math.isnan(bad.metrics["rewards/peregrm/resonation"][0])


def test_the_batch_deadline_makes_slow_groups_unscorable():
    judge = scripted_judge()
    answer = judge._responder
    # every judge call about the second example hangs far past the deadline
    judge._responder = lambda request, index: (
        Step("", delay=30)
        if "Loyal, keeps score" in request.messages[-1][1]
        else answer(request, index)
    )
    install(judge)
    log = Logged()
    out = call(
        GRPOReward(spec("perm"), num_generations=G, examples=EXAMPLES, deadline=0.5),
        batch(2),
        log=log,
    )
    assert all(r is not None for r in out[:3]) and out[3:] == [None, None, None]
    assert log.metrics["rewards/perm/late_frac"] == [0.5]
    assert log.metrics["rewards/perm/unscorable_frac"] == [0.5]
    assert log.metrics["rewards/perm/seconds"][0] < 5
    assert "batch deadline of 0.5 s" in log.extra["perm/unscorable"][3]


def test_judge_calls_are_bounded_by_the_judge_concurrency():
    judge = scripted_judge(delay=0.01)
    install(judge)
    judge.max_concurrency = 3
    call(GRPOReward(spec("perm"), num_generations=G, examples=EXAMPLES), batch(2))
    assert judge.peak_in_flight == 3 and len(judge.calls) == 6 * 4


def test_a_group_shares_one_criteria_set_and_each_step_draws_new_ones():
    judge = scripted_judge()
    install(judge)
    reward = GRPOReward(spec("peregrm"), num_generations=G, examples=EXAMPLES)
    record = []
    reward.on_batch = record.append

    async def two_steps():
        try:
            out = []
            for step in (0, 1):
                judge.calls.clear()
                await reward(**batch(2), trainer_state=SimpleNamespace(global_step=step))
                criteria_calls = [c for c in judge.calls if kind_of(c) == "criteria"]
                scoring = [c for c in judge.calls if kind_of(c) == "score"]
                out.append((criteria_calls, scoring))
            return out
        finally:
            await reward.aclose()

    (crit0, score0), (crit1, score1) = asyncio.run(two_steps())
    # one criteria request per (example, dimension) and step, shared by the group's 3 replies
    assert len(crit0) == len(crit1) == 2 * 3
    for scoring in (score0, score1):
        by_prompt: dict[tuple[str, str], set[str]] = {}
        for c in scoring:
            user = c.messages[-1][1]
            dim = next(d for d in ("resonation", "expression", "reception") if d in user.lower())
            key = ("Quiet engineer" in user, dim)
            by_prompt.setdefault(key, set()).add(user.split("drawn with seed ")[1].split()[0])
        assert all(len(seeds) == 1 for seeds in by_prompt.values())  # one set per group
    seeds0 = {c.seed for c in crit0}
    seeds1 = {c.seed for c in crit1}
    assert len(seeds0) == len(seeds1) == 1 and seeds0 != seeds1  # fresh criteria each step


def test_judge_down_for_several_batches_stops_training():
    install(scripted_judge(lambda request: LLMError("connection refused")))
    reward = GRPOReward(spec("perm"), num_generations=G, examples=EXAMPLES, abort_after=2)

    async def go():
        try:
            await reward(**batch(1), trainer_state=SimpleNamespace(global_step=0))
            with pytest.raises(JudgeUnavailableError, match="connection refused"):
                await reward(**batch(1), trainer_state=SimpleNamespace(global_step=1))
        finally:
            await reward.aclose()

    asyncio.run(go())


def test_every_reply_and_breakdown_is_recorded(tmp_path):
    install(scripted_judge())
    record = tmp_path / "breakdowns.jsonl"
    reward = GRPOReward(
        spec("rlpa"), num_generations=G, examples=EXAMPLES, record=record, policy="hf:tiny"
    )
    call(reward, batch(2), step=4)
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(rows) == 6 and {r["step"] for r in rows} == {4}
    assert rows[0]["reply"]["reply_id"] == rows[0]["breakdown"]["reply_id"] == "ex0:step4:0"
    assert rows[0]["reply"]["policy"] == "hf:tiny"
    assert set(rows[0]["breakdown"]["dimensions"]) == {"profile_match", "would_continue"}


def test_the_judge_is_built_on_the_calling_loop_and_closed():
    judge = scripted_judge()
    install(judge)
    opened = []
    judge.aclose = lambda: opened.append("closed") or asyncio.sleep(0)  # type: ignore[method-assign]
    reward = GRPOReward(
        RewardSpec(
            reward="perm", judge="scripted", overrides=JSON_JUDGE, options=LLMOptions(concurrency=2)
        ),
        num_generations=G,
        examples=EXAMPLES,
    )
    assert reward.manifest() is None
    call(reward, batch(1))
    assert opened == ["closed"]
    call(reward, batch(1))  # a second event loop builds a fresh judge
    assert opened == ["closed", "closed"]
    assert reward.__name__ == "perm"


def test_bad_reward_settings_fail_before_any_call():
    with pytest.raises(ValueError, match="criteria_mode"):
        GRPOReward(
            RewardSpec(reward="perm", overrides={"criteria_mode": "fixed"}),
            num_generations=2,
            examples=EXAMPLES,
        )
    with pytest.raises(ValueError, match="attune criteria"):
        check_examples(
            RewardSpec(reward="peregrm", overrides={"criteria_mode": "fixed"}), examples(1)
        )


def test_docstring_examples_hold():
    result = doctest.testmod(reward_module)
    assert result.failed == 0 and result.attempted > 0
