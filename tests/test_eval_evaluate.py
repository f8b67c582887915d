"""attune evaluate on a scripted judge: every table number against hand-computed values.

The fixture (tests/eval_scripted.py) writes each reply's Res/Exp/Rec into the reply,
so the numbers below are worked out from its table by hand.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from eval_scripted import judge, replies, split_examples
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.evaluation.evaluate import (
    EvalInputs,
    EvalSettings,
    run_evaluation,
    safe_name,
    spec_label,
    split_label,
)
from attunement.evaluation.tables import example_scores, scaling_ks, systems_of
from attunement.jsonl import read_jsonl
from attunement.judging import named_task
from attunement.llm.spec import register_backend
from attunement.records import Example, Judgement, Reply, RewardBreakdown


def inputs(**extra) -> EvalInputs:
    return EvalInputs(
        splits=split_examples(), replies={"base": replies("base"), "mism": replies("mism"), **extra}
    )


async def evaluate(tmp_path, judges=None, **settings):
    """Most tests skip the plots (slow to draw); test_outputs_are_written draws them."""
    settings.setdefault("plots", False)
    judges = judges or {"A": judge(), "B": judge(fail=("e2", "base", "reception"), name="judge-b")}
    run = await run_evaluation(
        inputs(), judges, tmp_path, EvalSettings(**settings), show_progress=False
    )
    return run, judges


def row(rows, judge_, split, system, **group):
    found = [
        r
        for r in rows
        if (r.judge, r.split, r.system) == (judge_, split, system) and r.group == group
    ]
    assert len(found) == 1, (judge_, split, system, group)
    return found[0]


def means(r) -> tuple:
    return tuple(
        round(r.columns[d].mean, 4) if r.columns[d].mean is not None else None
        for d in ("resonation", "expression", "reception")
    ) + (round(r.avg.mean, 4) if r.avg.mean is not None else None,)


async def test_table1_by_hand(tmp_path):
    run, _ = await evaluate(tmp_path)
    t = run.results.table
    assert len(t) == 2 * 2 * 2  # judges x splits x systems
    # judge A, random split (e1, e2, e3)
    # base Res (4+3+5)/3=4, Exp (4+4+5)/3, Rec (5+2+5)/3=4, Avg mean of the three
    assert means(row(t, "A", "random", "base")) == (4.0, 4.3333, 4.0, 4.1111)
    assert means(row(t, "A", "random", "mism")) == (3.0, 4.0, 3.0, 3.3333)
    assert means(row(t, "A", "ood", "base")) == (2.0, 3.0, 4.0, 3.0)
    assert means(row(t, "A", "ood", "mism")) == (1.0, 1.0, 1.0, 1.0)
    # judge B cannot score e2's base reception: Rec drops e2 only, (5+5)/2
    b = row(t, "B", "random", "base")
    assert means(b) == (4.0, 4.3333, 5.0, 4.4444)
    assert (b.examples, b.replies, b.unscorable) == (3, 3, 1)
    assert [b.columns[d].n for d in ("resonation", "expression", "reception")] == [3, 3, 2]
    assert b.avg.n == 2  # examples with all three dimensions
    a = row(t, "A", "random", "base")
    assert (a.examples, a.replies, a.unscorable, a.memory_mode) == (3, 3, 0, "full")
    # three users: an estimate and no interval (issue 17: a bootstrap of 3 users covered
    # 73% of the time, and one user gave a zero-width interval)
    for stat in (a.avg, a.columns["reception"], b.columns["resonation"]):
        assert (stat.low, stat.high, stat.note, stat.clusters) == (None, None, "n too small", 3)
    assert b.columns["reception"].clusters == b.avg.clusters == 2
    one = row(t, "A", "ood", "base")
    assert (one.avg.mean, one.avg.low, one.avg.high, one.avg.clusters) == (3.0, None, None, 1)


async def test_paired_comparison_by_hand(tmp_path):
    run, _ = await evaluate(tmp_path)
    pairs = {(p.judge, p.split, p.metric): p for p in run.results.paired if p.view == "baseline"}
    assert {p.baseline for p in pairs.values()} == {"base"}
    assert {p.system for p in pairs.values()} == {"mism"}
    # per-example Avg: base 13/3, 3, 5; mism 3, 7/3, 14/3 -> differences -4/3, -2/3, -1/3
    avg = pairs[("A", "random", "avg")]
    assert avg.diff.mean == pytest.approx(-7 / 9)
    assert (avg.n, avg.wins, avg.losses, avg.ties) == (3, 0, 3, 0)
    assert avg.sign_p == pytest.approx(0.25) and avg.wilcoxon_p == pytest.approx(0.25)
    # three users: no interval and no test, so nothing to adjust
    assert (avg.diff.low, avg.diff.high, avg.p, avg.p_holm) == (None, None, None, None)
    # Exp: 3-4, 4-4, 5-5 -> one loss, two ties
    exp = pairs[("A", "random", "expression")]
    assert exp.diff.mean == pytest.approx(-1 / 3) and (exp.wins, exp.losses, exp.ties) == (0, 1, 2)
    assert exp.sign_p == pytest.approx(1.0)
    # judge B: e2 has no base Avg, so two pairs: -4/3 and -1/3
    b = pairs[("B", "random", "avg")]
    assert b.n == 2 and b.diff.mean == pytest.approx(-5 / 6)
    assert pairs[("B", "random", "reception")].n == 2
    assert pairs[("A", "ood", "avg")].diff.mean == pytest.approx(-2.0)


async def test_breakdowns_by_hand(tmp_path):
    run, _ = await evaluate(tmp_path)
    cat = run.results.by_category
    # ES = e1, e3: base Res (4+5)/2, Exp (4+5)/2, Rec (5+5)/2 -> Avg 14/3
    es = row(cat, "A", "random", "base", category="ES")
    assert means(es) == (4.5, 4.5, 5.0, 4.6667) and es.examples == 2
    assert means(row(cat, "A", "random", "base", category="HEQ")) == (3.0, 4.0, 2.0, 3.0)
    assert means(row(cat, "A", "random", "mism", category="ES")) == (3.5, 4.0, 4.0, 3.8333)
    assert means(row(cat, "A", "ood", "mism", category="SS")) == (1.0, 1.0, 1.0, 1.0)
    assert not [r for r in cat if r.split == "random" and r.group["category"] == "SS"]
    # judge B: e2's base Rec is missing, so HEQ has Res and Exp but no Avg
    heq_b = row(cat, "B", "random", "base", category="HEQ")
    assert means(heq_b) == (3.0, 4.0, None, None)

    bf = run.results.by_big_five
    # openness low = e2, e3: base Res 4, Exp 4.5, Rec 3.5 -> Avg 4
    assert means(row(bf, "A", "random", "base", trait="openness", level="low")) == (
        4.0,
        4.5,
        3.5,
        4.0,
    )
    assert means(row(bf, "A", "random", "base", trait="openness", level="high")) == (
        4.0,
        4.0,
        5.0,
        4.3333,
    )
    assert means(row(bf, "A", "random", "mism", trait="openness", level="low")) == (
        3.0,
        4.5,
        3.0,
        3.5,
    )
    # every random-split user is extraversion low: the group is the whole split
    ext = row(bf, "A", "random", "base", trait="extraversion", level="low")
    assert means(ext) == means(row(run.results.table, "A", "random", "base"))
    assert not [r for r in bf if r.group == {"trait": "extraversion", "level": "high"}]
    assert (
        len([r for r in bf if r.judge == "A" and r.split == "random" and r.system == "base"]) == 6
    )  # openness low/high + one level of 4 traits


async def test_memory_view_by_hand(tmp_path):
    run, _ = await evaluate(tmp_path)
    mem = run.results.memory
    full = row(mem, "A", "random", "base")
    mism = row(mem, "A", "random", "mism")
    assert full.memory_mode == "full" and full.delta is None
    assert mism.memory_mode == "mismatch"
    assert mism.delta == pytest.approx(10 / 3 - 37 / 9)
    assert mism.relative == pytest.approx((10 / 3 - 37 / 9) / (37 / 9))
    assert [r.system for r in mem if r.judge == "A" and r.split == "random"] == ["base", "mism"]
    test = next(
        p
        for p in run.results.paired
        if p.view == "memory" and p.judge == "A" and p.split == "random"
    )
    assert test.baseline == "base" and test.diff.mean == pytest.approx(-7 / 9)


async def test_no_memory_view_with_one_mode(tmp_path):
    run = await run_evaluation(
        EvalInputs(splits=split_examples(), replies={"base": replies("base")}),
        {"A": judge()},
        tmp_path,
        EvalSettings(plots=False),
        show_progress=False,
    )
    assert run.results.memory == [] and run.results.paired == []
    assert "Memory ablation" not in (tmp_path / "results.md").read_text()


async def test_k_scaling_by_hand(tmp_path):
    run, _ = await evaluate(tmp_path, judges={"A": judge()}, k_scaling=2)
    pts = {(p.split, p.system, p.k): p for p in run.results.k_scaling}
    assert sorted({k for _, _, k in pts}) == [1, 2]
    # k=1: slot 0 scores are the fixed scores; k=2 adds slot 1, one point lower (min 1)
    assert means(pts[("random", "base", 1)]) == (4.0, 4.3333, 4.0, 4.1111)
    assert means(pts[("random", "base", 2)]) == (3.5, 3.8333, 3.5, 3.6111)
    # mism's e2 reception is 1 in both slots: Rec (2.5 + 1 + 4.5) / 3
    assert means(pts[("random", "mism", 2)])[2] == pytest.approx(2.6667)
    assert means(pts[("ood", "mism", 2)]) == (1.0, 1.0, 1.0, 1.0)
    # one reply per example: k score samples and k criteria samples per dimension
    assert pts[("random", "base", 1)].samples_per_reply == 6
    assert pts[("random", "base", 2)].samples_per_reply == 12
    t1, t2 = (
        pts[("random", "base", 1)].tokens_per_reply,
        pts[("random", "base", 2)].tokens_per_reply,
    )
    assert t1 > 0 and t2 == pytest.approx(2 * t1)
    assert scaling_ks(8) == [1, 2, 4, 8] and scaling_ks(5) == [1, 2, 4, 5]


async def test_rerun_costs_no_calls_and_gives_the_same_numbers(tmp_path):
    run, judges = await evaluate(tmp_path, k_scaling=2)
    calls = {label: len(j.calls) for label, j in judges.items()}
    # criteria (4 examples x 3 dims, judge A only) + 2 files x 4 examples x 3 dims (fixed)
    # + k scaling: 12 criteria requests (n=2) + 2 files x 4 x 3 x 2 slots
    assert calls["A"] == 12 + 24 + 12 + 48
    again = await run_evaluation(
        inputs(), judges, tmp_path, EvalSettings(k_scaling=2, plots=False), show_progress=False
    )
    assert {label: len(j.calls) for label, j in judges.items()} == calls
    assert again.results.criteria["resumed"] == 4 and again.results.criteria["prepared_now"] == 0
    first, second = run.results.model_dump(), again.results.model_dump()
    first.pop("criteria"), second.pop("criteria")
    assert first == second


async def test_outputs_are_written_and_escaped(tmp_path):
    run, _ = await evaluate(tmp_path, plots=True)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["reward"] == "peregrm"
    assert [j["model"] for j in data["judges"]] == ["judge-a", "judge-b"]
    assert data["judges"][0]["reward"]["config"]["criteria_mode"] == "fixed"
    assert data["criteria"]["prepared_now"] == 4 and data["criteria"]["judge"] == "judge-a"
    assert {s["label"] for s in data["systems"]} == {"base", "mism"}
    assert data["table"][0]["avg"]["mean"] == pytest.approx(37 / 9)
    md = (tmp_path / "results.md").read_text()
    assert "| base | 4.00 | 4.33 | 4.00 | 4.11 | 2.00 | 3.00 | 4.00 | 3.00 |" in md
    assert "| mism | 3.00 | 4.00 | 3.00 | 3.33 | 1.00 | 1.00 | 1.00 | 1.00 |" in md
    assert "| A | random | mism | base | Avg | -0.78 [" in md
    assert "Mismatch Memory" in md and "-18.9%" in md
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "table1_A.png" in plots and "memory_A_random.png" in plots
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    page = (tmp_path / "report.html").read_text()
    assert run.report == tmp_path / "report.html"
    # replies and queries are untrusted: shown as text, never as markup
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>ignored</b>" not in page and "<i>fine</i>" not in page
    assert "&lt;i&gt;fine&lt;/i&gt;" in page  # the judge's rationale, escaped
    assert page.count('<details class="example"') == 4
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(plots)
    assert base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert "<script" not in page.lower()


async def test_criteria_are_kept_and_other_settings_refused(tmp_path):
    await evaluate(tmp_path, judges={"A": judge()})
    stored = read_jsonl(tmp_path / "criteria.jsonl", Example)
    assert len(stored) == 4 and all(len(e.criteria) == 3 for e in stored)
    other = judge(name="another-judge")
    with pytest.raises(
        ValueError,
        match=r"criteria.jsonl was made with other settings \(judge: 'judge-a' -> 'another-judge'\)",
    ):
        await run_evaluation(inputs(), {"A": other}, tmp_path, show_progress=False)
    # examples that bring their own criteria cost no criteria call
    given = EvalInputs(splits={"s": stored}, replies={"base": replies("base")})
    fresh = judge()
    run = await run_evaluation(
        given, {"A": fresh}, tmp_path / "given", EvalSettings(plots=False), show_progress=False
    )
    assert run.results.criteria["from_input"] == 4 and run.results.criteria["prepared_now"] == 0
    assert not [c for c in fresh.calls if named_task(c.messages[-1][1])]


async def test_unreadable_criteria_leave_the_example_out(tmp_path):
    base = judge()

    def broken(request, index):
        user = request.messages[-1][1]
        if named_task(user) and "Query of e4" in user:
            return "no list here"
        return base._responder(request, index)

    from attunement.llm import ScriptedChatModel

    run = await run_evaluation(
        inputs(),
        {"A": ScriptedChatModel(broken, name="judge-a")},
        tmp_path,
        EvalSettings(plots=False),
        show_progress=False,
    )
    assert set(run.results.criteria["failed"]) == {"e4"}
    assert not [r for r in run.results.table if r.split == "ood" and r.examples]
    assert any("no criteria" in n for n in run.results.notes)


async def test_inputs_are_checked(tmp_path):
    stray = Reply(example_id="nope", reply_id="x", response="[r1 e1 c1] reply of base to nope")
    run = await run_evaluation(
        EvalInputs(splits=split_examples(), replies={"base": [*replies("base"), stray]}),
        {"A": judge()},
        tmp_path,
        EvalSettings(plots=False),
        show_progress=False,
    )
    assert any("1 reply refers to examples in none" in n for n in run.results.notes)
    with pytest.raises(ValueError, match="answer none of the examples"):
        await run_evaluation(
            EvalInputs(splits=split_examples(), replies={"x": [stray]}),
            {"A": judge()},
            tmp_path / "x",
            show_progress=False,
        )
    changed = split_examples()
    changed["ood"] = [changed["random"][0].model_copy(update={"query": "other"})]
    with pytest.raises(ValueError, match="differs between splits"):
        await run_evaluation(
            EvalInputs(splits=changed, replies={"b": replies("base")}),
            {"A": judge()},
            tmp_path / "y",
            show_progress=False,
        )
    early = judge()
    with pytest.raises(ValueError, match="--baseline 'nobody'"):
        await run_evaluation(
            inputs(),
            {"A": early},
            tmp_path / "z",
            EvalSettings(baseline="nobody"),
            show_progress=False,
        )
    with pytest.raises(ValueError, match="--k-scaling needs --reward peregrm"):
        await run_evaluation(
            inputs(),
            {"A": early},
            tmp_path / "z",
            EvalSettings(reward="perm", k_scaling=2),
            show_progress=False,
        )
    assert early.calls == []  # refused before any judge call


def test_systems_split_by_memory_mode_and_average_replies():
    rows = [
        Reply(example_id="e1", reply_id=f"e1:{m}:{i}", response="r", memory_mode=m)
        for m in ("none", "full")
        for i in range(2)
    ]
    systems = systems_of("pol", rows)
    assert [s.label for s in systems] == ["pol[full]", "pol[none]"]
    assert systems[0].reply_keys == {("e1", "e1:full:0"), ("e1", "e1:full:1")}

    def bd(rid, res, rec):
        return RewardBreakdown(
            example_id="e1",
            reply_id=rid,
            reward_model="peregrm",
            reward=None if rec is None else 0.5,
            unscorable=rec is None,
            reason="reception: none" if rec is None else None,
            dimensions={"resonation": res, "reception": rec},
            judgements=[Judgement(dimension="resonation", score=res)],
        )

    scores = example_scores(
        [bd("e1:full:0", 4, 2), bd("e1:full:1", 3, None), bd("e1:none:0", 1, 1)],
        systems[0].reply_keys,
        ["resonation", "reception"],
    )
    s = scores["e1"]
    assert s.values == {"resonation": 3.5, "reception": 2.0}
    assert (s.replies, s.unscorable) == (2, 1)


def test_labels_and_names():
    assert split_label("ood=data/test.jsonl") == ("ood", "data/test.jsonl")
    assert split_label("data/x=1.jsonl") == (None, "data/x=1.jsonl")
    assert split_label("judge=openai:http://h:8000/v1#m") == ("judge", "openai:http://h:8000/v1#m")
    assert spec_label("openai:http://h:8000/v1") == "openai"
    assert safe_name("../etc/passwd") == "etc_passwd"


def test_cli_evaluate_end_to_end(tmp_path):
    """The verb on a registered scripted backend: labels, files, the report path last."""
    from eval_scripted import SCORES  # noqa: F401  (documents where the numbers come from)

    register_backend("scripted-eval", lambda spec, options: judge(name=f"scripted:{spec.target}"))
    data = tmp_path / "in"
    data.mkdir()
    for split, examples in split_examples().items():
        (data / f"{split}.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in examples))
    for system in ("base", "mism"):
        (data / f"{system}.jsonl").write_text(
            "".join(r.model_dump_json() + "\n" for r in replies(system))
        )
    out_dir = tmp_path / "out"
    args = [
        "evaluate",
        "--data",
        f"random={data / 'random.jsonl'}",
        "--data",
        str(data / "ood.jsonl"),
        "--replies",
        f"base={data / 'base.jsonl'}",
        "--replies",
        str(data / "mism.jsonl"),
        "--judge",
        "J=scripted-eval:one",
        "--out",
        str(out_dir),
        "--examples-shown",
        "2",
        "-c",
        "2",
        "--no-plots",
    ]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"report: {out_dir / 'report.html'}"
    # (the terminal table depends on the width; the numbers are checked in results.json)
    data_json = json.loads((out_dir / "results.json").read_text())
    assert {s["label"] for s in data_json["splits"]} == {"random", "ood"}
    assert data_json["judges"][0]["spec"] == "scripted-eval:one"
    assert data_json["table"][0]["avg"]["mean"] == pytest.approx(37 / 9)  # base, random
    assert (out_dir / "cache.sqlite").exists()
    assert len(read_jsonl(out_dir / "scores" / "J" / "base.jsonl", RewardBreakdown)) == 4
    assert (out_dir / "report.html").read_text().count('<details class="example"') == 2
    # a second run is served from the score files: same table
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0
    again_json = json.loads((out_dir / "results.json").read_text())
    assert again_json["table"] == data_json["table"]
    bad = CliRunner().invoke(build_app(), [*args, "--set", "aggregation=median"])
    assert bad.exit_code == 2 and "reward options" in bad.output
