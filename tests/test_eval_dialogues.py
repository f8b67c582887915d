"""Systems compared on simulated talks: ``attune evaluate --dialogues``.

Talks are written by the library's ``converse`` with scripted models (the
policy tags the change each reply deserves, the simulator applies it), so
every figure is known by hand: the statistics' unit is the user, intervals
come from the bootstrap over users, comparisons pair users.
"""

from __future__ import annotations

import asyncio
import json

import dialogue_scripted as ds
import pytest
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.dialogue import ConverseSettings, converse
from attunement.evaluation.dialogues import (
    compare_dialogues,
    read_dialogue_set,
    user_values,
)
from attunement.evaluation.tables import StatsConfig

USERS = [ds.user(f"u{i}") for i in range(4)]


def talks(tmp_path, name, changes, *, samples=2, simulator="simulator"):
    out = tmp_path / name / "dialogues.jsonl"
    settings = ConverseSettings(max_turns=3, samples=samples)
    asyncio.run(
        converse(
            USERS,
            ds.policy(changes, name=name),
            ds.simulator(name=simulator),
            out,
            settings,
            show_progress=False,
        )
    )
    return out


def test_user_is_the_unit_and_the_paired_difference_is_exact(tmp_path):
    good = talks(tmp_path, "good", [10, 10, 10])  # 40 -> 70 after three replies
    bad = talks(tmp_path, "bad", [-5, -5, -5])  # 40 -> 25
    sets = [read_dialogue_set("good", good), read_dialogue_set("bad", bad)]
    assert sets[0].steps == 3  # read from the manifest: 3 user turns, last reply assessed
    table = compare_dialogues(sets, StatsConfig(resamples=200), baseline="bad")
    by = {r.system: r for r in table.rows}
    assert by["good"].dialogues == 8 and by["good"].users == 4
    assert by["good"].metrics["final_emotion"].n == 4  # over users, not talks
    assert by["good"].metrics["final_emotion"].mean == 70.0
    assert by["bad"].metrics["final_emotion"].mean == 25.0
    # area: e = 40, 50, 60, 70 -> (45 + 55 + 65) / 3
    assert by["good"].metrics["auc"].mean == pytest.approx(55.0)
    [diff] = [p for p in table.paired if p.metric == "final_emotion"]
    assert (diff.system, diff.baseline, diff.diff.mean, diff.n) == ("good", "bad", 45.0, 4)
    assert diff.wins == 4 and diff.view == "dialogue"


def test_per_user_means_weigh_each_user_once():
    from attunement.dialogue import DialogueScore

    def score(user, i, e):
        return DialogueScore(
            dialogue_id=f"{user}:{i}", user_id=user, policy="p", unscorable=False,
            final_emotion=e, auc=float(e), success=e == 100,
        )  # fmt: skip

    # user a has three talks at 100, user b one at 0: the mean over users is 50, not 75
    values = user_values(
        [score("a", 0, 100), score("a", 1, 100), score("a", 2, 100), score("b", 0, 0)]
    )
    assert values["a"]["final_emotion"] == 100.0 and values["b"]["final_emotion"] == 0.0
    assert sum(v["final_emotion"] for v in values.values()) / len(values) == 50.0


def test_systems_talked_to_by_different_simulators_are_refused(tmp_path):
    a = read_dialogue_set("a", talks(tmp_path, "a", [1], samples=1, simulator="sim-1"))
    b = read_dialogue_set("b", talks(tmp_path, "b", [1], samples=1, simulator="sim-2"))
    with pytest.raises(ValueError, match="different models"):
        compare_dialogues([a, b], StatsConfig(resamples=50))


def test_evaluate_dialogues_alone_needs_no_judge_and_draws_the_report(tmp_path):
    good = talks(tmp_path, "good", [10, 10, 10])
    bad = talks(tmp_path, "bad", [-5, -5, -5])
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        build_app(),
        ["evaluate", "--dialogues", f"good={good}", "--dialogues", f"bad={bad}",
         "--baseline", "bad", "--resamples", "200", "-o", str(out)],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "good: final emotion 70.0" in result.output
    record = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in record["dialogues"]["rows"]] == ["good", "bad"]
    page = (out / "report.html").read_text()
    assert 'id="dialogues"' in page and "data:image/png;base64," in page
    assert (out / "plots" / "dialogue_trajectories.png").exists()
    # one talk shown with the simulator's analysis beside each reply
    assert "change +10 -&gt; emotion 50 (B)" in page and "Need met: partly" in page
    assert "## Dialogues" in (out / "results.md").read_text()
