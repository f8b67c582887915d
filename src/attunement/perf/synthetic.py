"""Synthetic text and a synthetic batch of examples and replies, for the benchmarks.

The benchmarks measure what the judges' prompt and answer *lengths* cost, so
the text only has to have realistic lengths and be deterministic: every piece
is a run of plain words chosen by a hash of a salt, so the same settings give
the same prompts, the same cache keys and the same figures on every run.
"""

from __future__ import annotations

import hashlib

from attunement.records import Example, MemoryItem, Persona, Reply, Situation

_SENTENCE = (
    "the user seems worried that their effort will not be seen and the reply should "
    "acknowledge this before offering any practical step while keeping a calm and "
    "respectful tone that fits a reserved person who values competence and privacy"
)
_WORDS = _SENTENCE.split()


def filler(n_tokens: int, salt: str) -> str:
    """About ``n_tokens`` plain words (deterministic for a given salt).

    >>> filler(3, "a") == filler(3, "a") and len(filler(3, "a").split()) == 3
    True
    """
    start = int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % len(_WORDS)
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(max(1, n_tokens)))


def bench_batch(prompts: int, replies: int) -> tuple[list[Example], list[Reply]]:
    """``prompts`` examples with realistic context and ``replies`` replies each."""
    examples, answers = [], []
    for p in range(prompts):
        memories = [
            MemoryItem(
                memory_id=f"u{p}-m{i}",
                label="States_Experiences/Mental_State",
                value=f"Mentioned (note {i}) that {filler(14, f'{p}/m{i}')}",
            )
            for i in range(8)
        ]
        ex = Example(
            example_id=f"bench-{p}",
            user_id=f"user-{p}",
            category="ES",
            query=f"I don't know who else to tell. {filler(45, f'{p}/q')}?",
            persona=Persona(profile=filler(60, f"{p}/p"), topics=["work", "family"]),
            situation=Situation(category="ES", description=filler(40, f"{p}/s"), emotion="anxious"),
            memories=memories,
        )
        examples.append(ex)
        for r in range(replies):
            answers.append(
                Reply(
                    example_id=ex.example_id,
                    reply_id=f"bench-{p}-r{r}",
                    analysis=filler(80, f"{p}/{r}/a"),
                    response=filler(150, f"{p}/{r}/r"),
                )
            )
    return examples, answers
