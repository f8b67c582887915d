"""evaluation.emobench_data: reading EmoBench items, labels turned into positions."""

from __future__ import annotations

import json

import pytest

from attunement.benchmarks.emobench.data import EAItem, EUItem, read_ea, read_eu
from attunement.jsonl import RecordError


def ea_row(qid=1, qtype="Response", label="B", **extra):
    return {
        "qid": qid,
        "language": "en",
        "category": "Personal-Self",
        "question type": qtype,
        "scenario": "Sam lost a bet.",
        "subject": "Sam",
        "choices": ["A", "B", "C", "D"],
        "label": label,
        **extra,
    }


def eu_row(qid="7", emotion="Joy", cause="won", **extra):
    return {
        "qid": qid,
        "language": "en",
        "coarse_category": "complex_emotions",
        "finegrained_category": "emotion_transition",
        "scenario": "Ana won.",
        "subject": "Ana",
        "emotion_choices": ["Fear", "Joy", "Guilt"],
        "emotion_label": emotion,
        "cause_choices": ["lost", "won"],
        "cause_label": cause,
        **extra,
    }


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ea_label_becomes_a_position_and_types_filter(tmp_path):
    path = write(
        tmp_path / "EA.jsonl",
        [
            ea_row(1, "Response", "B"),
            ea_row(2, "Action", "D"),
            ea_row(3, "Action", "A", extra_field=1),
        ],
    )
    items = read_ea(path)
    assert [i.qid for i in items] == ["1", "2", "3"]  # int ids become text
    assert [i.answer_index for i in items] == [1, 3, 0]
    assert [i.qid for i in read_ea(path, question_type="Action")] == ["2", "3"]
    assert [i.qid for i in read_ea(path, question_type="Response")] == ["1"]


def test_eu_both_labels_become_positions(tmp_path):
    items = read_eu(write(tmp_path / "EU.jsonl", [eu_row(), eu_row("8", "Guilt", "lost")]))
    assert [(i.emotion_index, i.cause_index) for i in items] == [(1, 1), (2, 0)]
    assert items[0].coarse_category == "complex_emotions"


@pytest.mark.parametrize(
    "row, field",
    [
        (ea_row(label="E"), "not one of its choices"),
        ({k: v for k, v in ea_row().items() if k != "question type"}, "question type"),
        (ea_row(qtype="Feeling"), "question type"),
        (ea_row(choices=["only"], label="only"), "choices"),
    ],
)
def test_bad_ea_lines_name_file_and_line(tmp_path, row, field):
    path = write(tmp_path / "EA.jsonl", [ea_row(), row])
    with pytest.raises(RecordError) as err:
        read_ea(path)
    assert err.value.line == 2 and str(path) in str(err.value)
    assert field in str(err.value)


@pytest.mark.parametrize(
    "row, what",
    [
        (eu_row(emotion="Awe"), "emotion label 'Awe'"),
        (eu_row(cause="tied"), "cause label 'tied'"),
        (eu_row(scenario=""), "scenario"),
    ],
)
def test_bad_eu_lines_are_refused(tmp_path, row, what):
    with pytest.raises(RecordError, match="EU.jsonl:1") as err:
        read_eu(write(tmp_path / "EU.jsonl", [row]))
    assert what in str(err.value)


def test_items_validate_directly():
    assert EAItem.model_validate(ea_row(label="C")).answer_index == 2
    assert EUItem.model_validate(eu_row()).emotion_index == 1


def test_published_samples_read(shared_data):
    ea = read_ea(shared_data / "emobench" / "EA.sample.jsonl")
    eu = read_eu(shared_data / "emobench" / "EU.sample.jsonl")
    assert len(ea) == 10 and len(eu) == 10
    assert {i.question_type for i in ea} == {"Response", "Action"}
    for item in ea:
        assert item.choices[item.answer_index] == item.label
    for item in eu:
        assert item.emotion_choices[item.emotion_index] == item.emotion_label
        assert item.cause_choices[item.cause_index] == item.cause_label
