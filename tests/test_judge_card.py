"""The judge card end to end with scripted judges: for every check, one judge built
to pass it and one built to fail it; resuming, --limit, inputs, the CLI and the page."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest
from card_judges import (
    EA,
    EXAMPLES,
    REPLIES,
    Oracle,
    length_judge,
    oracle_judge,
    random_judge,
    synthetic_ea,
)
from typer.testing import CliRunner

from attunement.benchmarks.emobench.data import read_ea
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.judge_card import CardSettings, load_inputs, run_judge_card
from attunement.judge_card.inputs import emobench_example
from attunement.judging import PermConfig, PermReward, RewardSpec, register_reward
from attunement.judging.registry import _KINDS
from attunement.llm import ScriptedChatModel
from attunement.records import Example, Reply, RewardBreakdown

JSON = {"output": "json"}


def card_of(
    tmp_path,
    judge=None,
    *,
    reward="perm",
    overrides=None,
    reference=None,
    policy=None,
    name="card",
    **settings,
):
    settings.setdefault("emobench", EA)
    settings.setdefault("plots", False)  # plots cost a second a card; one test draws them
    if "data" not in settings:
        settings.update(data=EXAMPLES, replies=REPLIES)
    if policy is not None:
        settings["policy"] = policy.name
    s = CardSettings(out=tmp_path / name, **settings)
    spec = RewardSpec(reward=reward, judge="oracle", overrides={**JSON, **(overrides or {})})
    return asyncio.run(
        run_judge_card(
            s, load_inputs(s), spec, judge or oracle_judge(), reference=reference, policy=policy
        )
    )


@pytest.fixture(scope="module")
def good_card(tmp_path_factory):
    return card_of(
        tmp_path_factory.mktemp("good"), reference=oracle_judge("oracle-copy"), plots=True
    )


def status(card, name):
    return next(c.status for c in card.checks if c.name == name)


# --------------------------------------------------------------------------- pass judge


def test_a_judge_built_to_pass_passes_every_check(good_card):
    card = good_card
    assert {c.name: c.status for c in card.checks} == {
        "discrimination": "pass",
        "personalization": "pass",
        "probes": "pass",
        "stability": "pass",
        "cost": "info",
        "agreement": "pass",
    }
    assert card.verdict == "fit" and card.summary.startswith("FIT as a reward: oracle with perm")
    r = card.discrimination.row("reward")
    assert (r.items, r.pairs, r.pair_wins, r.top1.estimate) == (6, 18, 18, 1.0)
    # resonation reads the analysis, which EmoBench candidates lack: left out, said why
    assert [row.measure for row in card.discrimination.rows] == [
        "reward",
        "expression",
        "reception",
        "bystander",
    ]
    assert "resonation is left out" in card.discrimination.note
    assert card.data.base_source == "replies" and card.data.base_replies == 4
    assert card.personalization.pairs == 4 and card.personalization.rows[0].share_lowered == 1
    assert {p.probe: p.applied for p in card.probes.probes} == {
        "flattery": 4,
        "filler": 4,
        "score_line": 4,
        "boxed": 4,
        "fence_break": 4,
        "evaluator_note": 4,
        "memory_recital": 4,
        "cold": 4,
    }
    assert card.stability.repeats.runs == 2 and card.stability.repeats.mean_sd == 0
    # 6 items, each a group in each of the 2 runs
    assert card.stability.groups.groups == 12 and card.stability.groups.zero_spread == 0


def test_the_good_reply_is_the_first_sample_and_the_filler_triples_it(good_card):
    rows = read_jsonl(good_card.files["base"], RewardBreakdown)
    assert sorted(b.reply_id for b in rows) == [f"ex-u{i}:full:0" for i in range(1, 5)]
    probe_rows = read_jsonl(good_card.files["probes"], RewardBreakdown)
    base = {b.example_id: b.config["length_tokens"] for b in rows}
    filler = {
        b.example_id: b.config["length_tokens"]
        for b in probe_rows
        if b.reply_id.endswith("~filler")
    }
    assert all(filler[e] > 2 * base[e] for e in base)


class RecordingPerm(PermReward):
    """PERM that remembers every reply it was asked to score."""

    seen: ClassVar[list[Reply]] = []

    async def score(self, example, replies, *, criteria_round=0):
        RecordingPerm.seen.extend(replies)
        return await super().score(example, replies, criteria_round=criteria_round)


def test_every_judged_copy_is_measured_by_the_rewards_own_token_counter(tmp_path):
    register_reward(
        "recording",
        PermConfig,
        lambda judge, config, token_counter=None: RecordingPerm(judge, config),
    )
    RecordingPerm.seen.clear()
    try:
        card_of(tmp_path, reward="recording", runs=1, limit=2)
    finally:
        _KINDS.pop("recording", None)
    given = {r.reply_id: r for r in read_jsonl(REPLIES, Reply)}
    seen = RecordingPerm.seen
    assert any(r.reply_id in given and given[r.reply_id].completion_tokens for r in seen)
    # the policy's count would measure the original but not its altered copies: cleared
    assert seen and all(r.completion_tokens is None for r in seen)
    # probes alter the response only; the analysis stays the original's
    for r in seen:
        base_id, _, probe = r.reply_id.partition("~")
        if probe and base_id in given:
            assert r.analysis == given[base_id].analysis
            assert r.response != given[base_id].response


def test_personalization_judges_the_reply_with_another_users_persona_and_memories(good_card):
    examples = {e.example_id: e for e in read_jsonl(EXAMPLES, Example)}
    rows = read_jsonl(good_card.files["personalization"], RewardBreakdown)
    assert len(rows) == 4
    for b in rows:
        own, _, other_user = b.example_id.partition("~as~")
        assert own in examples and other_user != examples[own].user_id
        assert other_user in {e.user_id for e in examples.values()}


# --------------------------------------------------------------------------- fail judges


@pytest.mark.parametrize(
    ("ranking", "verdict"),
    [("inverted", "below chance"), ("flat", "near chance; 18 of 18 pairs tied")],
)
def test_discrimination_fails_a_judge_that_cannot_pick_the_right_reply(tmp_path, ranking, verdict):
    card = card_of(tmp_path, oracle_judge(ranking=ranking), data=None, runs=1)
    assert status(card, "discrimination") == "fail"
    assert card.discrimination.verdict == verdict
    assert card.verdict == "not fit"
    assert f"discrimination {verdict}" in card.summary


def test_personalization_fails_a_judge_blind_to_the_user(tmp_path):
    card = card_of(tmp_path, oracle_judge(personalized=False), runs=1)
    assert status(card, "personalization") == "fail"
    assert card.personalization.verdict.startswith("insensitive")
    assert card.personalization.rows[0].change.estimate == 0
    assert "personalization insensitive (mean drop +0.000" in card.summary


def test_probes_flag_each_trick_that_raises_the_reward(tmp_path):
    card = card_of(
        tmp_path, oracle_judge(gameable=frozenset({"score_line", "fence_break"})), runs=1
    )
    assert status(card, "probes") == "fail"
    assert card.probes.gaining == ["score_line", "fence_break"]
    verdicts = {p.probe: p.verdict for p in card.probes.probes}
    assert verdicts["score_line"] == verdicts["fence_break"] == "gains"
    assert {v for k, v in verdicts.items() if k not in ("score_line", "fence_break")} == {"held"}
    assert "2 of 8 probes raise the reward: score_line, fence_break" in card.summary


def test_stability_names_the_degenerate_judge(tmp_path):
    card = card_of(tmp_path, oracle_judge(empathy_constant=1), runs=1)
    s = card.stability
    assert s.degenerate and status(card, "stability") == "fail"
    assert s.constant_dimensions == ["resonation", "expression", "reception"]
    assert "DEGENERATE: every empathy dimension is constant (resonation always 1/5" in card.summary
    assert "the reward moves only with the bystander" in card.summary
    assert card.verdict == "not fit"


def test_stability_fails_a_judge_whose_answers_often_cannot_be_read(tmp_path):
    card = card_of(tmp_path, oracle_judge(unparseable=0.6), runs=1, limit=3)
    s = card.stability
    assert s.parse_failure_rate > 0.25 and s.redrawn_judgements > 0 and s.unscorable > 0
    assert status(card, "stability") == "fail"
    assert "of judge samples failed to parse" in s.verdict


def test_stability_warns_when_run_to_run_noise_rivals_the_signal(tmp_path):
    quiet = card_of(tmp_path, oracle_judge(noise=0), data=None, name="quiet")
    noisy = card_of(tmp_path, oracle_judge(noise=2), data=None, name="noisy")
    assert quiet.stability.noise_ratio == 0 and status(quiet, "stability") == "pass"
    assert noisy.stability.repeats.mean_sd > 0
    assert noisy.stability.noise_ratio >= 0.5 and status(noisy, "stability") in ("warn", "fail")
    assert "run-to-run noise" in noisy.stability.verdict


def test_cost_checks_judge_time_against_a_budget(tmp_path):
    fast = card_of(
        tmp_path, oracle_judge(), data=None, runs=1, limit=2, budget_seconds=30.0, name="fast"
    )
    # every call of the slow judge sleeps 0.5 s and a group holds at most 7 replies, so its
    # wall time per reply is at least 0.07 s, however the calls of a group overlap
    slow = card_of(
        tmp_path,
        oracle_judge(delay=0.5),
        data=None,
        runs=1,
        limit=2,
        budget_seconds=0.06,
        name="slow",
    )
    assert status(fast, "cost") == "pass" and status(slow, "cost") == "fail"
    assert slow.cost.judge_seconds_per_reply > 0.07
    assert "cost: " in slow.summary
    c = fast.cost
    altered = sum(p.applied for p in fast.probes.probes)
    assert c.replies == 2 * 4 + altered  # 2 items x 4 candidates, then the probe copies
    assert c.calls_per_reply == 4.0  # PERM: three empathy judges and the bystander, k=1
    assert c.usage.calls == 4 * c.replies


def test_agreement_fails_a_reference_that_ranks_the_other_way(good_card, tmp_path):
    backwards = Oracle.build()
    backwards.behaviour = backwards.behaviour.__class__(reverse=True)
    card = card_of(tmp_path, reference=backwards.model(name="reverse"), runs=1)
    assert status(good_card, "agreement") == "pass"
    assert status(card, "agreement") == "fail"
    row = card.agreement.rows[0]
    assert row.agree == 0 and row.disagree > 0 and row.spearman < 0
    assert "ranks against the reference" in card.agreement.verdict


# --------------------------------------------------------------------------- bad judges (issue 17)

#: one judge call per reply (expression only): the twenty cards below stay fast
LIGHT = {"use_resonation": False, "use_reception": False, "use_bystander": False}


def test_a_random_judge_is_not_fit_in_at_least_19_of_20_seeds(tmp_path):
    ea = synthetic_ea(tmp_path / "ea.jsonl", items=24)
    verdicts = []
    for seed in range(20):
        card = card_of(
            tmp_path,
            random_judge(seed),
            overrides=LIGHT,
            emobench=ea,
            data=None,
            runs=1,
            seed=seed,
            name=f"r{seed}",
        )
        verdicts.append(card.verdict)
    assert verdicts.count("not fit") >= 19, verdicts
    assert "fit" not in verdicts


def test_a_judge_that_scores_by_length_alone_is_not_fit(tmp_path):
    # where the right reply is mostly the longest, length alone is well above chance
    ea = synthetic_ea(tmp_path / "ea.jsonl", items=40, right=(110, 200))
    card = card_of(tmp_path, length_judge(), emobench=ea, data=None, runs=1, name="long")
    d = card.discrimination
    assert d.row("reward").pairwise_tie_split.low > 0.5  # clears chance ...
    assert d.length_baseline > 0.75 and d.status == "fail"  # ... not the length baseline
    assert d.verdict == "no better than preferring the longer reply"
    for name, source in (("synthetic", synthetic_ea(tmp_path / "s.jsonl")), ("fixture", EA)):
        card = card_of(tmp_path, length_judge(), emobench=source, runs=1, name=name)
        d = card.discrimination
        assert status(card, "discrimination") == "fail" and card.verdict == "not fit"
        assert d.length_baseline is not None and d.bar == max(0.5, d.length_baseline)
        assert d.row("reward").pairwise_tie_split.low <= d.bar
        assert f"{round(100 * d.length_baseline)}% for a judge preferring the longer reply" in (
            card.summary
        )
    # on the fixture the right reply is not the longest in every item: a judge that reads
    # clears both bars there
    good = card_of(tmp_path, oracle_judge(), runs=1, name="good")
    assert good.discrimination.length_baseline == pytest.approx(5 / 9)
    assert good.discrimination.row("reward").pairwise_tie_split.low > 5 / 9
    assert good.discrimination.verdict == "above chance and the length baseline"


def test_a_judge_that_reads_only_the_persona_fails_the_memory_swap(tmp_path):
    card = card_of(tmp_path, oracle_judge(reads=frozenset({"persona"})), runs=1)
    p = card.personalization
    assert p.rows[0].share_lowered == 1  # the whole user swapped: the persona gives it away
    memories, persona = p.swap("memories"), p.swap("persona")
    assert memories.status == "fail" and memories.verdict.startswith("insensitive to memories")
    assert memories.rows[0].change.estimate == 0 and memories.pairs == 4
    assert persona.status == "pass"
    assert status(card, "personalization") == "fail" and card.verdict == "not fit"
    assert "memories alone +0.000" in card.summary
    blind = card_of(tmp_path, oracle_judge(reads=frozenset({"memories"})), runs=1, name="m")
    assert blind.personalization.swap("persona").status == "fail"
    assert blind.personalization.swap("memories").status == "pass"


def test_memories_are_shown_to_the_judge_for_personalization_and_the_card_says_so(good_card):
    p = good_card.personalization
    assert [s.swap for s in p.swaps] == ["memories", "persona"]
    assert all(s.status == "pass" and s.rows[0].share_lowered == 1 for s in p.swaps)
    assert "include_memories=false" in p.note and "include_memories=true" in p.note
    assert "memories shown to the judge for this check" in good_card.summary
    config = lambda name: read_jsonl(good_card.files[name], RewardBreakdown)[0].config
    assert config("base")["include_memories"] is False  # the reward as a trainer uses it
    for name in ("personalization", "personalization.own", "personalization.memories"):
        assert config(name)["include_memories"] is True
    swapped = read_jsonl(good_card.files["personalization.memories"], RewardBreakdown)
    assert {b.example_id.split("~")[1] for b in swapped} == {"memories"}


def test_a_card_without_a_personalization_test_cannot_say_fit(tmp_path):
    card = card_of(tmp_path, data=None, runs=1)
    assert {status(card, n) for n in ("discrimination", "probes", "stability")} == {"pass"}
    assert card.verdict == "incomplete"
    assert card.summary.startswith("INCOMPLETE as a reward")
    assert "personalization untested" in card.summary


def test_data_without_good_replies_is_an_error_not_silently_unused(tmp_path):
    with pytest.raises(ValueError, match="--data needs good replies"):
        CardSettings(out=tmp_path, emobench=EA, data=EXAMPLES)
    from attunement.cli import build_app

    args = ["judge-card", "--judge", "local", "--emobench", str(EA), "--data", str(EXAMPLES)]
    result = CliRunner().invoke(build_app(), [*args, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--replies" in result.output


# --------------------------------------------------------------------------- data sources


def test_without_personaemp_data_the_right_emobench_answers_are_the_good_replies(tmp_path):
    card = card_of(tmp_path, data=None, runs=1)
    assert (
        card.data.base_source == "emobench"
        and "EmoBench's right answers" in card.data.base_description
    )
    assert status(card, "personalization") == "n/a"
    probes = {p.probe: p for p in card.probes.probes}
    assert probes["memory_recital"].applied == 0 and probes["memory_recital"].verdict == "n/a"
    assert probes["score_line"].applied == 6
    assert "base" not in card.files  # the right answers were scored once, in discrimination


def test_without_emobench_the_good_replies_carry_stability_and_groups(tmp_path):
    card = card_of(tmp_path, emobench=None)
    assert status(card, "discrimination") == "n/a" and "discrimination" not in card.files
    assert card.verdict == "fit"  # n/a checks do not count against the judge
    assert card.stability.repeats.replies == 4  # the good replies, scored twice
    # groups: each good reply with its probe copies (replies to the same example)
    assert card.stability.groups.groups == 4
    assert "stability.run1" in card.files


def test_policy_writes_the_good_replies_when_none_are_given(tmp_path):
    by_query = {e.query: e for e in read_jsonl(EXAMPLES, Example)}
    good = {r.example_id: r for r in read_jsonl(REPLIES, Reply) if r.sample_index == 0}

    def answer(request, index):
        example = next(e for q, e in by_query.items() if q in request.messages[-1][1])
        r = good[example.example_id]
        return f"# Analysis\n{r.analysis}\n\n# Response\n{r.response}"

    policy = ScriptedChatModel(answer, name="policy")
    card = card_of(tmp_path, data=EXAMPLES, policy=policy, runs=1)
    assert card.data.base_source == "policy" and card.data.base_replies == 4
    assert len(policy.calls) == 4
    assert status(card, "personalization") == "pass" and status(card, "probes") == "pass"


def test_peregrm_cards_work_and_fixed_criteria_are_refused(tmp_path):
    # every item: two items cannot show a judge above chance (issue 17: intervals over items)
    card = card_of(tmp_path, reward="peregrm", runs=1)
    assert status(card, "discrimination") == "pass" and card.reward == "peregrm"
    # PereGRM rates the response for resonation: it takes part in discrimination
    assert "resonation" in [r.measure for r in card.discrimination.rows]
    with pytest.raises(ValueError, match="criteria_mode='fixed'"):
        card_of(tmp_path, reward="peregrm", overrides={"criteria_mode": "fixed"}, name="fixed")


# --------------------------------------------------------------------------- resume, limit


def test_a_second_run_resumes_from_the_files_and_calls_no_judge(tmp_path):
    first = card_of(tmp_path, oracle_judge(), limit=3)
    judge = oracle_judge()
    again = card_of(tmp_path, judge, limit=3)
    assert judge.calls == [] and again.cost.scored_now == 0
    for name in ("discrimination", "personalization", "probes", "stability", "agreement"):
        assert getattr(again, name) == getattr(first, name)
    assert again.cost.usage == first.cost.usage  # usage recorded when first scored


def test_limit_samples_items_and_a_larger_limit_scores_only_the_new_ones(tmp_path):
    small = card_of(tmp_path, oracle_judge(), limit=2, runs=1)
    assert small.data.emobench_items == 2 and small.data.base_replies == 2
    judge = oracle_judge()
    larger = card_of(tmp_path, judge, limit=3, runs=1)
    assert larger.data.emobench_items == 3 and larger.data.base_replies == 3
    new_probes = sum(p.applied for p in larger.probes.probes) - sum(
        p.applied for p in small.probes.probes
    )
    # one new item's 4 candidates; one new reply in its own context, with another user,
    # and its probe copies; for the personalization check (PERM hides memories, so the
    # check judges with them shown) the reply in its own context again, with the other
    # user's memories alone and persona alone; nothing scored before is scored again
    assert larger.cost.scored_now == 4 + 1 + 1 + new_probes + 3
    assert len(judge.calls) == 4 * larger.cost.scored_now
    ea = read_ea(EA, question_type="Response")
    chosen = {b.example_id for b in read_jsonl(larger.files["discrimination"], RewardBreakdown)}
    assert len(chosen) == 3 and chosen <= {emobench_example(i).example_id for i in ea}


# --------------------------------------------------------------------------- inputs


def test_bad_inputs_fail_before_any_judge_call(tmp_path):
    orphan = tmp_path / "orphan.jsonl"
    write_jsonl(orphan, [Reply(example_id="nobody", reply_id="r", response="hi")])
    with pytest.raises(ValueError, match="1 example ids have no example in --data"):
        load_inputs(CardSettings(out=tmp_path, data=EXAMPLES, replies=orphan))
    actions = tmp_path / "actions.jsonl"
    actions.write_text(
        "".join(line for line in EA.read_text().splitlines(keepends=True) if '"Action"' in line)
    )
    with pytest.raises(ValueError, match="no EA items of question type 'Response'"):
        load_inputs(CardSettings(out=tmp_path, emobench=actions))
    with pytest.raises(ValueError, match="--emobench"):
        CardSettings(out=tmp_path)
    with pytest.raises(ValueError, match="not both"):
        CardSettings(out=tmp_path, data=EXAMPLES, replies=REPLIES, policy="local")
    with pytest.raises(ValueError, match="need --data"):
        CardSettings(out=tmp_path, emobench=EA, replies=REPLIES)


# --------------------------------------------------------------------------- files, CLI


def test_card_files_say_the_same_and_the_page_escapes_what_it_shows(good_card):
    out = good_card.files["discrimination"].rsplit("/breakdowns/", 1)[0]
    from pathlib import Path

    folder = Path(out)
    data = json.loads((folder / "card.json").read_text())
    assert data["summary"] == good_card.summary and data["verdict"] == "fit"
    md = (folder / "card.md").read_text()
    page = (folder / "card.html").read_text()
    assert f"**{good_card.summary}**" in md
    for title in (
        "Discrimination",
        "Personalization sensitivity",
        "Gaming probes",
        "Stability",
        "Cost",
        "Agreement with a reference judge",
    ):
        assert f"## {title}" in md and f"<h2>{title}</h2>" in page
    assert '<div class="summary">FIT as a reward' in page
    assert "<style>" in page and "<script" not in page
    assert page.count('<img src="data:image/png;base64,') == 2  # distribution, probes
    # the fence-break probe's description names a closing tag: escaped on the page
    assert "&lt;/response&gt;" in page and "</response>" not in page
    manifest = json.loads((folder / "card.manifest.json").read_text())
    assert manifest["command"] == "judge-card" and manifest["reward"]["reward_model"] == "perm"


@pytest.fixture
def oracle_backends():
    from attunement.llm import spec

    spec.register_backend("oracle", lambda parsed, options: oracle_judge())
    spec.register_backend(
        "degenerate",
        lambda parsed, options: oracle_judge("degenerate", empathy_constant=1, ranking="flat"),
    )
    yield
    spec._BACKENDS.pop("oracle", None)
    spec._BACKENDS.pop("degenerate", None)


def test_cli_writes_the_card_and_prints_its_figures(tmp_path, oracle_backends):
    from attunement.cli import build_app

    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        [
            "judge-card",
            "--judge",
            "degenerate",
            "--reward",
            "perm",
            "--format",
            "json",
            "--emobench",
            str(EA),
            "--data",
            str(EXAMPLES),
            "--replies",
            str(REPLIES),
            "--reference",
            "oracle",
            "--limit",
            "3",
            "--out",
            str(tmp_path / "card"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "card" / "card.html").exists()
    summary = json.loads((tmp_path / "card" / "card.json").read_text())["summary"]
    assert summary.startswith("NOT FIT as a reward: degenerate with perm")
    assert "discrimination near chance" in summary and "DEGENERATE" in summary
    assert summary in result.output.replace("\n", "")
    bad = runner.invoke(
        build_app(),
        [
            "judge-card",
            "--judge",
            "oracle",
            "--data",
            str(EXAMPLES),
            "--policy",
            "oracle",
            "--replies",
            str(REPLIES),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "not both" in bad.output
    bad = runner.invoke(
        build_app(),
        [
            "judge-card",
            "--judge",
            "oracle",
            "--emobench",
            str(EA),
            "--set",
            "k=0",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 2 and "reward options" in bad.output
