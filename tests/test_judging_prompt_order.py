"""Every judge prompt puts what a group of replies shares before the reply, and says
nothing twice (issue 18, finding 9).

A server's prefix cache reuses the longest start two prompts have in common. The
replies of a GRPO group are judged with the same instructions, answer format,
user record, message, dimension and criteria; only the judged text differs. So
the judged text must come last, after every shared part, and no shared part may
be sent twice in one prompt (it would cost prefill twice for nothing).
"""

from __future__ import annotations

import pytest

from attunement.judging import load_reward
from attunement.llm import ScriptedChatModel
from attunement.records import (
    EMPATHY_DIMENSIONS,
    Example,
    MemoryItem,
    Persona,
    Reply,
    Situation,
    Turn,
)

#: a shared part longer than this may appear only once in a prompt
LONGEST_REPEAT = 40


def example(dialogue: bool) -> Example:
    return Example(
        example_id="e1",
        query="My sister stopped answering my calls after the wedding and I keep replaying it.",
        persona=Persona(
            profile="A careful, private accountant who hates being the centre of attention."
        ),
        memories=[
            MemoryItem(memory_id="m1", value="Organised her sister's wedding almost alone."),
            MemoryItem(memory_id="m2", value="Tends to blame herself first when things go wrong."),
        ],
        situation=Situation(
            category="ES", description="Two weeks after the wedding the sister went silent."
        ),
        dialogue=(
            [
                Turn(role="user", text="Can I tell you about my sister, the bride of the year?"),
                Turn(role="assistant", text="Of course, I am listening whenever you are ready."),
            ]
            if dialogue
            else []
        ),
        criteria={
            d: f"1. Names the hurt of the silence for {d} (60%): first\n"
            f"2. Leaves the next step to her on {d} (40%): then"
            for d in EMPATHY_DIMENSIONS
        },
    )


def reply(n: int) -> Reply:
    return Reply(
        example_id="e1",
        reply_id=f"r{n}",
        analysis=f"Analysis number {n}: she fears the wedding work went unseen by her sister.",
        response=f"Response number {n}: that silence after all you gave must sting badly.",
    )


REWARDS = [
    ("perm", {"output": "text"}),
    ("perm", {"output": "json", "resonation_on": "analysis", "judge_context": "full"}),
    ("peregrm", {"criteria_mode": "shared", "output": "text"}),
    ("peregrm", {"criteria_mode": "inline", "output": "json", "judge_context": "full"}),
    ("peregrm", {"criteria_mode": "fixed", "output": "text"}),
    ("peregrm", {"criteria_mode": "per_reply", "resonation_on": "analysis"}),
    ("rlpa", {"output": "text"}),
    ("rlpa", {"output": "json"}),
]


def flat(messages) -> str:
    """A prompt as a server's prefix cache sees it: its messages in order."""
    return "".join(f"<|{m['role']}|>{m['content']}" for m in messages)


def common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def prompt_pairs(name: str, config, dialogue: bool):
    """(first reply's prompt, second reply's prompt, the first reply) for every prompt
    the reward sends."""
    reward = load_reward(name, ScriptedChatModel(outputs=[]), **config)
    ex = example(dialogue)
    one, two = reply(1), reply(2)
    return list(zip(reward.probe_prompts(ex, one), reward.probe_prompts(ex, two), strict=True))


@pytest.mark.parametrize("dialogue", [False, True])
@pytest.mark.parametrize(("name", "config"), REWARDS)
def test_the_judged_text_comes_after_everything_the_group_shares(name, config, dialogue):
    pairs = prompt_pairs(name, config, dialogue)
    assert pairs
    for a, b in pairs:
        first, second = flat(a), flat(b)
        if first == second:  # a prompt with no reply in it (criteria writing)
            assert "number 1" not in first
            continue
        judged = next(t for t in (reply(1).analysis, reply(1).response) if t in first)
        assert first.count("number 1") == 1  # one judged text, sent once
        # the two prompts part only at the judged text (everything before it is shared) ...
        assert common_prefix(first, second) == first.index(judged) + len("Analysis number ")
        # ... and after it comes nothing but its closing fence
        after = first[first.index(judged) + len(judged) :]
        assert len(after) <= len("\n</response>"), after
        assert second.endswith(after)


@pytest.mark.parametrize("dialogue", [False, True])
@pytest.mark.parametrize(("name", "config"), REWARDS)
def test_no_shared_part_is_sent_twice_in_one_prompt(name, config, dialogue):
    ex = example(dialogue)
    shared_texts = [
        ex.query,
        ex.persona.profile,
        ex.situation.description,
        *(m.value for m in ex.memories),
        *(t.text for t in ex.dialogue),
        *(line for c in ex.criteria.values() for line in c.splitlines()),
    ]
    for a, _ in prompt_pairs(name, config, dialogue):
        text = flat(a)
        for part in shared_texts:
            assert text.count(part) <= 1, part
        lines = [line.strip() for m in a for line in m["content"].splitlines()]
        for line in lines:
            if len(line) > LONGEST_REPEAT:
                assert text.count(line) == 1, line


@pytest.mark.parametrize("mode", ["shared", "inline", "fixed"])
def test_peregrm_names_the_dimension_after_the_user_so_dimensions_share_it(mode):
    """The three dimensions' prompts of one reply share the user's record and message:
    the dimension and its definition come after them."""
    ex = example(dialogue=False)
    reward = load_reward("peregrm", ScriptedChatModel(outputs=[]), criteria_mode=mode)
    prompts = [flat(p) for p in reward.probe_prompts(ex, reply(1))]
    by_kind: dict[str, list[str]] = {}
    for text in prompts:
        by_kind.setdefault(text[:200], []).append(text)
    groups = [texts for texts in by_kind.values() if len(texts) == len(EMPATHY_DIMENSIONS)]
    assert groups  # criteria writing and scoring: one prompt per dimension each
    for texts in groups:
        shared = min(common_prefix(texts[0], t) for t in texts[1:])
        for part in (ex.query, ex.persona.profile, ex.situation.description):
            assert texts[0].index(part) + len(part) <= shared, part
