"""The judge card end to end on the embedded model: real judge calls, every check
computed, and a summary line that says plainly what is wrong with a 135M judge."""

from __future__ import annotations

import json

import pytest
from card_judges import EXAMPLES, REPLIES
from typer.testing import CliRunner

from attunement.cli import build_app

pytestmark = pytest.mark.slow

# short free-text fields and one re-draw keep the tiny model quick
SMALL = ["--set", "json_text_chars=60", "--set", "max_tokens=256", "--set", "max_resamples=1"]


def test_card_on_the_embedded_model(local_model, shared_data, tmp_path):
    out = tmp_path / "card"
    ea = shared_data / "emobench" / "EA.sample.jsonl"
    # one item per check keeps the run to 18 replies (72 judge calls) on a loaded CPU
    args = [
        *["judge-card", "--judge", "local", "--reward", "perm", "--limit", "1", "--runs", "2"],
        *("--emobench", str(ea), "--data", str(EXAMPLES), "--replies", str(REPLIES)),
        *("--out", str(out), *SMALL),
    ]
    result = CliRunner().invoke(build_app(), args)
    print(result.output)  # the figures, for the record (pytest -s shows them)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert (out / "card.md").exists() and (out / "card.html").exists()

    disc = card["discrimination"]
    assert disc["items"] == 1 and disc["status"] in ("pass", "warn", "fail")
    reward_row = disc["rows"][0]
    assert (
        reward_row["measure"] == "reward"
        and reward_row["pairs"] + 3 * disc["unscorable_items"] == 3
    )
    assert card["personalization"]["pairs"] == 1
    assert {p["probe"] for p in card["probes"]["probes"]} >= {"score_line", "fence_break"}
    stab = card["stability"]
    assert stab["judgements"] > 0 and stab["repeats"]["runs"] == 2
    assert card["cost"]["usage"]["calls"] > 0 and card["cost"]["calls_per_reply"] > 0

    # the summary names what makes the judge unfit, in plain words
    summary = card["summary"]
    assert summary in result.output.replace("\n", "")
    if disc["status"] != "pass":
        assert f"discrimination {disc['verdict']}" in summary
        assert not summary.startswith("FIT")
    if stab["degenerate"]:
        assert "DEGENERATE" in summary and summary.startswith("NOT FIT")

    # a second run resumes from the files: no judge call, the same figures
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0, again.output
    card2 = json.loads((out / "card.json").read_text())
    assert card2["cost"]["scored_now"] == 0
    assert card2["discrimination"] == disc and card2["summary"] == summary
