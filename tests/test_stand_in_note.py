"""The embedded stand-in's note travels with the numbers (issue 17, finding 12).

A model built from the bare spec ``local`` knows it is the stand-in; whatever
it judges carries :data:`attunement.llm.STAND_IN_NOTE` in its manifest, and
every report made from such a manifest shows the note. Scripted judges marked
as the stand-in stand for it (the embedded model is slow); a judge that is not
the stand-in leaves no trace of the note anywhere.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from card_judges import EA, EXAMPLES, REPLIES, oracle_judge
from eval_scripted import judge as eval_judge
from eval_scripted import replies as eval_replies
from eval_scripted import split_examples
from test_benchmarks_emobench import ITEMS
from test_benchmarks_emobench import model as emobench_model
from test_benchmarks_eqbench3 import FILES, judge_model, model_under_test
from test_demo import scripted_everything
from test_judging_scoring import dataset, perm_reward, scripted
from typer.testing import CliRunner

from attunement.benchmarks.emobench import run_emobench, write_emobench_report
from attunement.benchmarks.emobench.scoring import EmoBenchAnswer
from attunement.benchmarks.eqbench3 import load_eqbench_data, run_eqbench3, write_eqbench_report
from attunement.cli import build_app
from attunement.evaluation.evaluate import EvalInputs, EvalSettings, run_evaluation
from attunement.jsonl import manifest_path, read_jsonl, write_jsonl
from attunement.judge_card import CardSettings, load_inputs, run_judge_card
from attunement.judging import RewardSpec, score_dataset
from attunement.llm import STAND_IN_KEY, STAND_IN_NOTE, LLMOptions, load_chat_model, spec

#: the note as the reports write it (wrapped terminal lines are joined before comparing)
NOTE = STAND_IN_NOTE


def stand_in(model):
    """A scripted model marked as the embedded stand-in (as ``local`` builds it)."""
    model.stand_in = True
    return model


def flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- the spec


def test_the_bare_local_spec_builds_the_stand_in_and_a_chosen_gguf_file_does_not(
    tmp_path, monkeypatch
):
    from attunement.llm import local

    weights = tmp_path / "SmolLM2-135M-Instruct.gguf"
    weights.write_bytes(b"GGUF")  # never loaded: the model loads on its first call
    monkeypatch.setattr(local, "find_default_gguf", lambda: weights)
    assert load_chat_model("local").stand_in
    cached = load_chat_model("local", LLMOptions(cache=tmp_path / "cache.sqlite"))
    assert cached.stand_in and cached.inner.stand_in
    assert not load_chat_model(f"local:{weights}").stand_in


# --------------------------------------------------------------------------- score


@pytest.mark.parametrize("marked", [True, False])
def test_a_score_files_manifest_carries_the_note_only_when_the_stand_in_judged(tmp_path, marked):
    examples, replies = dataset(2, 1)
    judge = scripted({"resonation": 4, "expression": 3, "reception": 5}, bystander=72)
    out = tmp_path / "scores.jsonl"
    reward = perm_reward(stand_in(judge) if marked else judge)
    asyncio.run(score_dataset(reward, examples, replies, out, concurrency=1, show_progress=False))
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["reward"].get(STAND_IN_KEY) == (NOTE if marked else None)
    assert ("stand-in" in manifest_path(out).read_text()) is marked


@pytest.mark.parametrize("marked", [True, False])
def test_score_says_the_note_under_its_summary(tmp_path, monkeypatch, marked):
    examples, replies = dataset(2, 1)
    write_jsonl(tmp_path / "ex.jsonl", examples)
    write_jsonl(tmp_path / "re.jsonl", replies)
    judge = scripted({"resonation": 4, "expression": 3, "reception": 5}, bystander=72)
    judge = stand_in(judge) if marked else judge
    monkeypatch.setitem(spec._BACKENDS, "scripted-note", lambda parsed, options: judge)
    out = tmp_path / "b.jsonl"
    args = ["score", "--data", str(tmp_path / "ex.jsonl"), "--replies", str(tmp_path / "re.jsonl")]
    args += ["--reward", "perm", "--judge", "scripted-note", "--out", str(out)]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    # after the closing "written:" line, from the manifest just written
    tail = flat(result.output.split("written:")[-1])
    assert (flat(NOTE) in tail) is marked, result.output


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("marked", [True, False])
def test_evaluate_reports_carry_the_note_only_when_the_stand_in_judged(tmp_path, marked):
    judge = stand_in(eval_judge()) if marked else eval_judge()
    inputs = EvalInputs(
        splits=split_examples(),
        replies={"base": eval_replies("base"), "mism": eval_replies("mism")},
    )
    asyncio.run(
        run_evaluation(
            inputs, {"A": judge}, tmp_path, EvalSettings(plots=False), show_progress=False
        )
    )
    md = (tmp_path / "results.md").read_text()
    # right under the title, before any number
    assert (md.splitlines()[2] == f"**Note: {NOTE}.**") is marked, md[:400]
    assert (NOTE in md) is marked
    assert (NOTE in (tmp_path / "report.html").read_text()) is marked
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["judges"][0]["reward"].get(STAND_IN_KEY) == (NOTE if marked else None)


# --------------------------------------------------------------------------- judge card


@pytest.mark.parametrize("marked", [True, False])
def test_judge_card_files_carry_the_note_only_when_the_stand_in_judged(tmp_path, marked):
    judge = stand_in(oracle_judge()) if marked else oracle_judge()
    settings = CardSettings(
        out=tmp_path / "card", emobench=EA, data=EXAMPLES, replies=REPLIES, plots=False
    )
    reward = RewardSpec(reward="perm", judge="oracle", overrides={"output": "json"})
    asyncio.run(run_judge_card(settings, load_inputs(settings), reward, judge))
    md = (tmp_path / "card" / "card.md").read_text()
    assert (md.splitlines()[2] == f"**Note: {NOTE}.**") is marked, md[:400]
    assert (NOTE in (tmp_path / "card" / "card.html").read_text()) is marked
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["reward_manifest"].get(STAND_IN_KEY) == (NOTE if marked else None)


# --------------------------------------------------------------------------- EmoBench


@pytest.mark.parametrize("marked", [True, False])
def test_emobench_results_and_report_carry_the_note_only_for_the_stand_in(tmp_path, marked):
    model = stand_in(emobench_model()) if marked else emobench_model()
    results = asyncio.run(run_emobench(ITEMS, model, tmp_path, show_progress=False))
    answers = read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer)
    page = write_emobench_report(results, ITEMS, answers, tmp_path, shown=1).read_text()
    md = (tmp_path / "results.md").read_text()
    assert (md.splitlines()[2] == f"**Note: {NOTE}.**") is marked, md[:400]
    assert (NOTE in page) is marked
    manifest = json.loads(manifest_path(tmp_path / "answers.jsonl").read_text())
    assert manifest.get(STAND_IN_KEY) == (NOTE if marked else None)


@pytest.mark.parametrize("marked", [True, False])
def test_eqbench3_results_and_report_carry_the_note_only_when_the_stand_in_judged(tmp_path, marked):
    folder = tmp_path / "eqbench3"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    bench = load_eqbench_data(folder)
    judge = stand_in(judge_model()) if marked else judge_model()
    out = tmp_path / "run"
    results = asyncio.run(run_eqbench3(bench, model_under_test(), judge, out, show_progress=False))
    page = write_eqbench_report(results, bench, out).read_text()
    md = (out / "results.md").read_text()
    assert (md.splitlines()[2] == f"**Note: {NOTE}.**") is marked, md[:400]
    assert (NOTE in page) is marked
    assert json.loads((out / "manifest.json").read_text()).get(STAND_IN_KEY) == (
        NOTE if marked else None
    )


# --------------------------------------------------------------------------- demo


def test_demo_on_the_stand_in_says_so_first_and_its_report_shows_it(tmp_path, monkeypatch):
    model = stand_in(scripted_everything())
    monkeypatch.setitem(spec._BACKENDS, "local", lambda parsed, options: model)
    args = ["demo", "--out", str(tmp_path), "--model", "local", "--queries", "2"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert flat(result.output).startswith(flat(NOTE)), result.output[:300]
    assert flat(result.output).count(flat(NOTE)) == 1
    report = Path(tmp_path / "eval")
    assert NOTE in (report / "results.md").read_text()
    assert NOTE in (report / "report.html").read_text()
