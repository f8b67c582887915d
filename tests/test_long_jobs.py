"""Long jobs keep going past an example that always fails, and say so at the end.

One example a server always refuses (an HTTP 400) used to cancel a whole
``generate`` or ``score`` run. Now it is recorded with its reason, the other
examples are finished and written, and the command exits 1 with a count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.judging import PermConfig, RewardModel, registry, score_dataset
from attunement.llm import LLMStatusError, ScriptedChatModel, spec
from attunement.policy.generate import generate_replies
from attunement.records import Example, Reply, RewardBreakdown

REFUSED = "e1"


def examples(n: int = 3) -> list[Example]:
    return [
        Example(example_id=f"e{i}", user_id=f"u{i}", query=f"Question {i}: why me?")
        for i in range(n)
    ]


def replies(n: int = 3) -> list[Reply]:
    return [
        Reply(example_id=f"e{i}", reply_id=f"e{i}-r{j}", response=f"reply {j}")
        for i in range(n)
        for j in range(2)
    ]


class RefusesOne(RewardModel):
    """Scores every reply 0.5, except that the judge refuses one example (HTTP 400)."""

    name = "refuses_one"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def score(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> list[RewardBreakdown]:
        if example.example_id == REFUSED:
            raise LLMStatusError("judge: HTTP 400: the prompt is too long", status=400)
        return [
            RewardBreakdown(
                example_id=r.example_id, reply_id=r.reply_id, reward_model=self.name, reward=0.5
            )
            for r in replies
        ]

    def manifest(self) -> dict[str, Any]:
        return {"reward": self.name}


def refusing_policy() -> ScriptedChatModel:
    return ScriptedChatModel(
        rules=[(f"Question {REFUSED[1:]}:", LLMStatusError("HTTP 400: refused", status=400))],
        default="# Analysis\nThey feel alone.\n\n# Response\nThat sounds hard.",
        name="scripted-policy",
    )


async def test_score_dataset_goes_on_past_a_failing_example(tmp_path):
    out = tmp_path / "scores.jsonl"
    summary = await score_dataset(
        RefusesOne(), examples(), replies(), out, concurrency=1, show_progress=False
    )
    rows = read_jsonl(out, RewardBreakdown)
    assert sorted({b.example_id for b in rows}) == ["e0", "e2"] and len(rows) == 4
    assert [(f.key, f.reason) for f in summary.failed] == [
        ("e1", "LLMStatusError: judge: HTTP 400: the prompt is too long")
    ]


async def test_generate_replies_goes_on_past_a_failing_example(tmp_path):
    out = tmp_path / "replies.jsonl"
    report = await generate_replies(
        examples(), refusing_policy(), out, n=2, concurrency=1, show_progress=False
    )
    written = read_jsonl(out, Reply)
    assert sorted({r.example_id for r in written}) == ["e0", "e2"] and len(written) == 4
    assert [f.key for f in report.failed] == ["e1"]
    assert "HTTP 400: refused" in report.failed[0].reason


@pytest.fixture
def stub_backends():
    spec.register_backend("stubpolicy", lambda parsed, options: refusing_policy())
    spec.register_backend(
        "stubjudge",
        lambda parsed, options: ScriptedChatModel(rules=[], default="unused", name="stub-judge"),
    )
    registry.register_reward("refuses_one", PermConfig, RefusesOne)
    yield
    for name in ("stubpolicy", "stubjudge"):
        spec._BACKENDS.pop(name, None)
    registry._KINDS.pop("refuses_one", None)


def test_cli_score_exits_1_with_a_count_after_writing_the_rest(tmp_path, stub_backends):
    write_jsonl(tmp_path / "ex.jsonl", examples())
    write_jsonl(tmp_path / "re.jsonl", replies())
    result = CliRunner().invoke(
        build_app(),
        [
            "score",
            "--data",
            str(tmp_path / "ex.jsonl"),
            "--replies",
            str(tmp_path / "re.jsonl"),
            "--reward",
            "refuses_one",
            "--judge",
            "stubjudge",
            "--out",
            str(tmp_path / "b.jsonl"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert len(read_jsonl(tmp_path / "b.jsonl", RewardBreakdown)) == 4
    lines = result.stderr.splitlines()
    assert "failed: e1: LLMStatusError: judge: HTTP 400: the prompt is too long" in lines
    assert "1 example failed and was not written; run the same command again to retry it" in lines
    assert f"written: {tmp_path / 'b.jsonl'} (4 breakdowns: 4 scorable, 0 unscorable)" in lines


def test_cli_generate_exits_1_with_a_count_after_writing_the_rest(tmp_path, stub_backends):
    write_jsonl(tmp_path / "ex.jsonl", examples(4))
    result = CliRunner().invoke(
        build_app(),
        [
            "generate",
            "--data",
            str(tmp_path / "ex.jsonl"),
            "--policy",
            "stubpolicy",
            "--out",
            str(tmp_path / "replies.jsonl"),
            "-n",
            "2",
        ],
    )
    assert result.exit_code == 1, result.output
    assert len(read_jsonl(tmp_path / "replies.jsonl", Reply)) == 6
    assert "1 example failed and was not written; run the same command again to retry it" in (
        result.stderr.splitlines()
    )
