"""PERM-style augmentation of EmpatheticDialogues-like rows."""

from __future__ import annotations

import json

import pytest
from build_scripted import scripted_builder

from attunement.building.augment import EDRow, augment_dataset
from attunement.jsonl import RecordError, read_jsonl
from attunement.records import Category, Example


async def test_rows_become_examples_with_light_persona(tmp_path, fixtures_dir):
    model = scripted_builder()
    report = await augment_dataset(
        fixtures_dir / "build_ed.jsonl", tmp_path, model, show_progress=False
    )
    assert report.rows == 3 and report.accepted == 3 and report.rejected == 0
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    by_id = {e.example_id: e for e in examples}
    ed2 = by_id["ed-2"]
    assert ed2.query == "So I fell flat on my face during the play last night, everyone laughed."
    assert ed2.situation.emotion == "embarrassed" and ed2.category == Category.ES
    assert ed2.situation.description.startswith("Sam found")
    assert ed2.persona.name == "Sam" and ed2.persona.age == 34
    assert ed2.persona.gender == "male" and ed2.persona.occupation == "teacher"
    assert ed2.meta["original_situation"].endswith("play, in front of everyone.")
    assert ed2.meta["category_assumed"] is True
    rows = [json.loads(x) for x in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["prompt"] for r in rows)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "attunement.augment" and manifest["prompt"]["version"]
    # the utterance is fenced in the prompt
    assert "<utterance>" in model.calls[0].messages[-1][1]

    again = scripted_builder()
    await augment_dataset(fixtures_dir / "build_ed.jsonl", tmp_path, again, show_progress=False)
    assert again.calls == []  # resumed


async def test_invalid_persona_is_retried_then_rejected(tmp_path, fixtures_dir):
    def bad(request, index):
        return json.dumps(
            {"scenario": "Too short.", "name": "A", "age": 30, "gender": "f", "occupation": "x"}
        )

    report = await augment_dataset(
        fixtures_dir / "build_ed.jsonl",
        tmp_path,
        scripted_builder({"augment": bad}),
        limit=1,
        show_progress=False,
    )
    assert report.accepted == 0 and report.rejection_reasons == {"augment.invalid_output": 1}
    assert (tmp_path / "examples.jsonl").read_text() == ""


def test_ed_column_names_and_bad_rows(tmp_path):
    row = EDRow.model_validate(
        {"conv_id": "c", "context": "afraid", "prompt": "a_comma_ b", "utterance": "hi"}
    )
    assert row.emotion == "afraid" and row.situation == "a, b"
    p = tmp_path / "ed.jsonl"
    p.write_text('{"conv_id": "c1", "emotion": "sad", "situation": "x"}\n')
    with pytest.raises(RecordError, match=r"ed.jsonl:1: utterance: Field required"):
        read_jsonl(p, EDRow)
