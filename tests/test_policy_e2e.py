"""End to end on the embedded model: every memory mode, from examples to Reply records."""

from __future__ import annotations

import json

import pytest

from attunement.jsonl import read_jsonl
from attunement.policy import MEMORY_MODES, generate_replies
from attunement.records import Example, MemoryItem, Persona, Reply, Situation


def two_users() -> list[Example]:
    lina = [
        MemoryItem(memory_id="l1", value="Lina's grandmother raised her and died last year"),
        MemoryItem(memory_id="l2", value="Lina bakes her grandmother's cake recipes"),
        MemoryItem(memory_id="l3", value="Lina works as a paramedic"),
        MemoryItem(memory_id="l4", value="Lina prefers practical advice over sympathy"),
    ]
    omar = [
        MemoryItem(memory_id="o1", value="Omar is preparing for his bar exam"),
        MemoryItem(memory_id="o2", value="Omar's parents expect him to be a lawyer"),
    ]
    return [
        Example(
            example_id="lina-1",
            user_id="lina",
            memories=lina,
            category="ES",
            query="It's her birthday today and I don't know what to do with myself.",
            situation=Situation(
                category="ES",
                description="First birthday of her grandmother since she died.",
                emotion="grief",
            ),
            persona=Persona(profile="A practical paramedic who hides her own grief."),
        ),
        Example(
            example_id="omar-1",
            user_id="omar",
            memories=omar,
            category="SS",
            query="How do I tell my parents I might not want to be a lawyer?",
        ),
    ]


@pytest.mark.slow
async def test_every_memory_mode_on_the_embedded_model(tmp_path, local_model):
    examples = two_users()
    for mode in MEMORY_MODES:
        out = tmp_path / f"replies.{mode}.jsonl"
        report = await generate_replies(
            examples,
            local_model,
            out,
            memory_mode=mode,
            max_tokens=24,
            temperature=0.7,
            seed=1,
            summary_max_tokens=48,
            concurrency=1,
            show_progress=False,
        )
        replies = read_jsonl(out, Reply)
        assert report.replies_written == len(replies) == 2, mode
        assert sorted(r.reply_id for r in replies) == [f"lina-1:{mode}:0", f"omar-1:{mode}:0"]
        for r in replies:
            assert r.policy == local_model.name and r.memory_mode == mode
            assert r.raw.strip(), f"{mode}: the model wrote nothing"
            assert r.response.strip()  # the parser never loses a non-empty reply
            assert 0 < r.completion_tokens <= 24
            assert r.format_ok or r.analysis == ""
        # summary: one summary per user, then one reply per example
        assert report.usage.calls == (4 if mode == "summary" else 2), mode
        manifest = json.loads(report.manifest.read_text())
        assert manifest["status"] == "complete" and manifest["settings"]["memory"]["mode"] == mode
        # resuming a finished file costs no call
        before = local_model.usage.calls
        again = await generate_replies(
            examples,
            local_model,
            out,
            memory_mode=mode,
            max_tokens=24,
            temperature=0.7,
            seed=1,
            summary_max_tokens=48,
            show_progress=False,
        )
        assert again.replies_written == 0 and local_model.usage.calls == before
