"""Every judge prompt puts what a group of replies shares before the reply, and says
nothing twice (issue 18, finding 9).

A server's prefix cache reuses the longest start two prompts have in common. The
replies of a GRPO group are judged with the same instructions, answer format,
user record, message, dimension and criteria; only the judged text differs. So
the judged text must come last, after every shared part, and no shared part may
be sent twice in one prompt (it would cost prefill twice for nothing).
"""

from __future__ import annotations

import re

import pytest

from attunement.judging import load_reward
from attunement.judging.templates import CRITERIA_SET_HEADING, named_set
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
    sets_shown = 0
    for a, b in pairs:
        first, second = flat(a), flat(b)
        if first == second:  # a prompt with no reply in it (criteria writing)
            assert "number 1" not in first
            continue
        judged = next(t for t in (reply(1).analysis, reply(1).response) if t in first)
        assert first.count("number 1") == 1  # one judged text, sent once
        # the two prompts part only at the judged text (everything before it is shared) ...
        assert common_prefix(first, second) == first.index(judged) + len("Analysis number ")
        # ... and after it comes nothing but its closing fence and, where the prompt shows
        # several criteria sets, the line naming the one to score by
        after = first[first.index(judged) + len(judged) :]
        closing = re.match(r"\n</(?:response|analysis)>", after)
        assert closing is not None, after
        tail = after[closing.end() :]
        shows_sets = CRITERIA_SET_HEADING.format(number=1) in first
        sets_shown += shows_sets
        assert tail == ("\n\n" + named_set(1) if shows_sets else ""), after
        assert second.endswith(after)
    # PereGRM scoring against criteria written at run time shows them as numbered sets
    assert bool(sets_shown) == (config.get("criteria_mode") in ("shared", "per_reply"))


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


# --------------------------------------------------------------------------- k criteria sets


def criteria_text(dimension: str, index: int) -> str:
    """The criteria the scripted judge writes for sample ``index`` of ``dimension``."""
    return (
        f"1. Set {index} names what the silence costs on {dimension} (70%): first point\n"
        f"2. Set {index} leaves the next step to her on {dimension} (30%): second point"
    )


def sets_judge(*, broken: tuple[int, ...] = ()):
    """A scripted judge that writes numbered criteria (sample ``broken`` unreadable)
    and scores each reply with the number of the set its prompt names; it keeps
    every scoring prompt, by (reply, dimension)."""
    from attunement.perf.judge import judge_prompts

    scoring: dict[tuple[str, str], list[str]] = {}

    def respond(request, index):
        messages = request.message_dicts
        name = judge_prompts().identify(messages)
        dim = next(d for d in EMPATHY_DIMENSIONS if f"# Dimension: {d}" in flat(messages))
        if name == "peregrm_criteria":
            return "nothing usable" if index in broken else criteria_text(dim, index)
        text = flat(messages)
        who = "r1" if "number 1" in text else "r2"
        scoring.setdefault((who, dim), []).append(text)
        number = int(re.search(r"(\d+)\.$", text).group(1))
        return f"Analysis: judged by set {number}.\nScores: \\boxed{{{number}}}"

    return ScriptedChatModel(respond), scoring


@pytest.mark.parametrize("mode", ["shared", "per_reply"])
def test_each_scoring_call_shows_all_k_sets_once_in_order_and_names_its_own_last(mode):
    import asyncio

    judge, scoring = sets_judge()
    reward = load_reward(
        "peregrm", judge, k=4, criteria_mode=mode, output="text", use_bystander=False
    )
    breakdowns = asyncio.run(reward.score(example(False), [reply(1), reply(2)]))
    assert len(scoring) == 2 * len(EMPATHY_DIMENSIONS)
    # per_reply draws each reply its own criteria: reply p's samples start at p * block
    block = 4 * (1 + reward.config.max_resamples) if mode == "per_reply" else 0
    first_sample = {"r1": 0, "r2": block}
    for (who, dim), prompts in scoring.items():
        judged = reply(int(who[1])).response
        sets = [criteria_text(dim, first_sample[who] + i) for i in range(4)]
        assert len(prompts) == 4
        named = []
        for text in prompts:
            # every set once, in order, all before the judged text
            starts = [text.index(c) for c in sets]
            assert all(text.count(c) == 1 for c in sets)
            assert starts == sorted(starts) and starts[-1] < text.index(judged)
            number = int(re.search(r"(\d+)\.$", text).group(1))
            named.append(number)
            # after the judged text: its closing fence, then the line naming the set
            assert text.endswith(f"{judged}\n</response>\n\n{named_set(number)}")
        assert sorted(named) == [1, 2, 3, 4]
        # the k calls for one reply differ only in that last line
        bodies = {t[: -len(named_set(n))] for t, n in zip(prompts, named)}
        assert len(bodies) == 1
    for b in breakdowns:
        for j in b.judgements:
            # the verdict of slot j came from the call naming set j + 1, against its criteria
            assert j.score == j.sample_index + 1
            assert j.criteria == criteria_text(
                j.dimension, first_sample[b.reply_id] + j.sample_index
            )


def test_shared_prompts_of_a_group_part_only_at_the_reply():
    import asyncio

    judge, scoring = sets_judge()
    reward = load_reward("peregrm", judge, k=4, output="text", use_bystander=False)
    asyncio.run(reward.score(example(False), [reply(1), reply(2)]))
    for dim in EMPATHY_DIMENSIONS:
        one, two = scoring[("r1", dim)][0], scoring[("r2", dim)][0]
        assert common_prefix(one, two) == one.index("number 1") + len("number ")


def test_an_unusable_criteria_set_is_left_out_of_the_scoring_prompts():
    """Criteria sample 1 is unreadable: the three valid sets fill slots 0-2, slot 3 is
    a failure with its reason, and no prompt shows or names a fourth set."""
    import asyncio

    judge, scoring = sets_judge(broken=(1,))
    reward = load_reward("peregrm", judge, k=4, output="text", use_bystander=False, max_resamples=0)
    (first,) = asyncio.run(reward.score(example(False), [reply(1)]))
    for dim in EMPATHY_DIMENSIONS:
        prompts = scoring[("r1", dim)]
        assert sorted(int(re.search(r"(\d+)\.$", t).group(1)) for t in prompts) == [1, 2, 3]
        for text in prompts:
            assert criteria_text(dim, 1) not in text and criteria_text(dim, 3) in text
            assert CRITERIA_SET_HEADING.format(number=3) in text
            assert CRITERIA_SET_HEADING.format(number=4) not in text
    missing = [j for j in first.judgements if j.score is None]
    assert {j.sample_index for j in missing} == {3}
    assert all("criteria sample 3 unusable" in j.reason for j in missing)
    assert all(j.score == j.sample_index + 1 for j in first.judgements if j.score is not None)
