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
from attunement.judging.templates import CRITERIA_SET_HEADING, named_dimension, named_in, named_set
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
        named = named_in(first)
        sets_shown += named is not None
        assert tail == ("\n\n" + named_set(*named) if named else ""), after
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


@pytest.mark.parametrize("mode", ["inline", "fixed"])
def test_peregrm_names_the_dimension_after_the_user_so_dimensions_share_it(mode):
    """The three dimensions' prompts of one reply share the user's record and message:
    the dimension and its definition come after them."""
    ex = example(dialogue=False)
    reward = load_reward(
        "peregrm", ScriptedChatModel(outputs=[]), criteria_mode=mode, use_bystander=False
    )
    texts = [flat(p) for p in reward.probe_prompts(ex, reply(1))]
    assert len(texts) == len(EMPATHY_DIMENSIONS)
    shared = min(common_prefix(texts[0], t) for t in texts[1:])
    for part in (ex.query, ex.persona.profile, ex.situation.description):
        assert texts[0].index(part) + len(part) <= shared, part


@pytest.mark.parametrize("mode", ["shared", "per_reply"])
def test_criteria_and_scoring_prompts_of_an_example_share_all_up_to_the_task(mode):
    """PereGRM writes criteria and scores by them with one prompt whose last part
    says which: all its requests about one example share the instructions, the
    definitions, the user's record and the message, so a prefix cache prefills the
    record once per example; the criteria requests differ only in their last line."""
    ex = example(dialogue=False)
    reward = load_reward(
        "peregrm", ScriptedChatModel(outputs=[]), criteria_mode=mode, use_bystander=False
    )
    prompts = list(reward.probe_prompts(ex, reply(1)))
    texts = [flat(p) for p in prompts]
    assert len(texts) == 2 * len(EMPATHY_DIMENSIONS)
    shared = min(common_prefix(texts[0], t) for t in texts[1:])
    for part in (ex.query, ex.persona.profile, ex.situation.description, *ex.memories):
        part = getattr(part, "value", part)
        assert texts[0].index(part) + len(part) <= shared, part
    criteria = texts[: len(EMPATHY_DIMENSIONS)]
    for dim, text in zip(EMPATHY_DIMENSIONS, criteria, strict=True):
        assert "number 1" not in text  # no reply in view
        assert text.endswith("\n" + named_dimension(dim))
        body = text[: -len(named_dimension(dim))]
        assert body == criteria[0][: -len(named_dimension(EMPATHY_DIMENSIONS[0]))]
    # every dimension's definition comes before the user's record (every example shares it)
    for dim in EMPATHY_DIMENSIONS:
        assert f"## {dim}\n" in texts[0][: texts[0].index(ex.persona.profile)]


# --------------------------------------------------------------------------- k criteria sets


def criteria_text(dimension: str, index: int) -> str:
    """The criteria the scripted judge writes for sample ``index`` of ``dimension``."""
    return (
        f"1. Set {index} names what the silence costs on {dimension} (70%): first point\n"
        f"2. Set {index} leaves the next step to her on {dimension} (30%): second point"
    )


def criteria_for(prompt: str) -> str | None:
    """The dimension a criteria request names in its last line (None for scoring)."""
    for dim in EMPATHY_DIMENSIONS:
        if prompt.endswith("\n" + named_dimension(dim)):
            return dim
    return None


def sets_judge(*, broken: tuple[int, ...] = ()):
    """A scripted judge that writes numbered criteria (sample ``broken`` unreadable)
    and scores each reply with the number of the set its prompt names; it keeps
    every scoring prompt, by reply, and the (dimension, set) each one named."""
    scoring: dict[str, list[tuple[str, int, str]]] = {}

    def respond(request, index):
        messages = request.message_dicts
        text = flat(messages)
        dim = criteria_for(text)
        if dim is not None:
            return "nothing usable" if index in broken else criteria_text(dim, index)
        named_dim, number = named_in(text)
        who = "r1" if "number 1" in text else "r2"
        scoring.setdefault(who, []).append((named_dim, number, text))
        return f"Analysis: judged by set {number}.\nScores: \\boxed{{{number}}}"

    return ScriptedChatModel(respond), scoring


@pytest.mark.parametrize("mode", ["shared", "per_reply"])
def test_each_scoring_call_shows_every_set_once_in_order_and_names_its_own_last(mode):
    """A reply's 3 x k scoring calls show the k sets of every dimension once, in
    order, before the reply, and differ only in the last line, which names one
    (dimension, set) pair: each pair once. Slot j's verdict is the call naming set
    j + 1 of its dimension, against that set's criteria."""
    import asyncio

    judge, scoring = sets_judge()
    reward = load_reward(
        "peregrm", judge, k=4, criteria_mode=mode, output="text", use_bystander=False
    )
    breakdowns = asyncio.run(reward.score(example(False), [reply(1), reply(2)]))
    assert sorted(scoring) == ["r1", "r2"]
    # per_reply draws each reply its own criteria: reply p's samples start at p * block
    block = 4 * (1 + reward.config.max_resamples) if mode == "per_reply" else 0
    first_sample = {"r1": 0, "r2": block}
    for who, calls in scoring.items():
        judged = reply(int(who[1])).response
        sets = [
            criteria_text(d, first_sample[who] + i) for d in EMPATHY_DIMENSIONS for i in range(4)
        ]
        assert len(calls) == 4 * len(EMPATHY_DIMENSIONS)
        for dim, number, text in calls:
            # every set once, in order (dimension by dimension), all before the judged text
            starts = [text.index(c) for c in sets]
            assert all(text.count(c) == 1 for c in sets)
            assert starts == sorted(starts) and starts[-1] < text.index(judged)
            assert text.count(judged) == 1
            # after the judged text: its closing fence, then the line naming the set
            assert text.endswith(f"{judged}\n</response>\n\n{named_set(dim, number)}")
        named = sorted((d, n) for d, n, _ in calls)
        assert named == sorted((d, n) for d in EMPATHY_DIMENSIONS for n in range(1, 5))
        # the calls for one reply differ only in that last line
        bodies = {t[: -len(named_set(d, n))] for d, n, t in calls}
        assert len(bodies) == 1
    for b in breakdowns:
        assert len(b.judgements) == 4 * len(EMPATHY_DIMENSIONS)
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
    one, two = scoring["r1"][0][2], scoring["r2"][0][2]
    assert common_prefix(one, two) == one.index("number 1") + len("number ")


def test_dimensions_judged_on_different_texts_get_their_own_prompts():
    """With resonation judged on the analysis, its calls show only its own sets
    and the analysis; expression and reception share theirs, on the response."""
    import asyncio

    judge, scoring = sets_judge()
    reward = load_reward(
        "peregrm", judge, k=2, output="text", use_bystander=False, resonation_on="analysis"
    )
    asyncio.run(reward.score(example(False), [reply(1)]))
    calls = scoring["r1"]
    assert len(calls) == 2 * len(EMPATHY_DIMENSIONS)
    for dim, _, text in calls:
        on_analysis = dim == "resonation"
        assert (reply(1).analysis in text) == on_analysis
        assert (reply(1).response in text) != on_analysis
        shown = {d for d in EMPATHY_DIMENSIONS if criteria_text(d, 0) in text}
        assert shown == ({"resonation"} if on_analysis else {"expression", "reception"})


def test_an_unusable_criteria_set_is_left_out_of_the_scoring_prompts():
    """Criteria sample 1 is unreadable: the three valid sets fill slots 0-2, slot 3 is
    a failure with its reason, and no prompt shows or names a fourth set."""
    import asyncio

    judge, scoring = sets_judge(broken=(1,))
    reward = load_reward("peregrm", judge, k=4, output="text", use_bystander=False, max_resamples=0)
    (first,) = asyncio.run(reward.score(example(False), [reply(1)]))
    calls = scoring["r1"]
    for dim in EMPATHY_DIMENSIONS:
        assert sorted(n for d, n, _ in calls if d == dim) == [1, 2, 3]
    for _, _, text in calls:
        for dim in EMPATHY_DIMENSIONS:
            assert criteria_text(dim, 1) not in text and criteria_text(dim, 3) in text
            assert CRITERIA_SET_HEADING.format(dimension=dim, number=3) in text
            assert CRITERIA_SET_HEADING.format(dimension=dim, number=4) not in text
    missing = [j for j in first.judgements if j.score is None]
    assert {(j.dimension, j.sample_index) for j in missing} == {(d, 3) for d in EMPATHY_DIMENSIONS}
    assert all("criteria sample 3 unusable" in j.reason for j in missing)
    assert all(j.score == j.sample_index + 1 for j in first.judgements if j.score is not None)


def test_sets_shown_dimension_shows_the_named_dimensions_sets_only():
    """For judges with a small context window: each call shows its own dimension's k
    sets; the k calls of one (reply, dimension) still differ only in the last line."""
    import asyncio

    judge, scoring = sets_judge()
    reward = load_reward(
        "peregrm", judge, k=3, output="text", use_bystander=False, sets_shown="dimension"
    )
    (scored,) = asyncio.run(reward.score(example(False), [reply(1)]))
    calls = scoring["r1"]
    assert len(calls) == 3 * len(EMPATHY_DIMENSIONS)
    for dim in EMPATHY_DIMENSIONS:
        own = [t for d, _, t in calls if d == dim]
        for text in own:
            shown = {d for d in EMPATHY_DIMENSIONS if criteria_text(d, 0) in text}
            assert shown == {dim}
            assert all(criteria_text(dim, i) in text for i in range(3))
        bodies = {t[: -len(named_set(dim, n))] for d, n, t in calls if d == dim}
        assert len(bodies) == 1
    assert all(j.score == j.sample_index + 1 for j in scored.judgements)


@pytest.mark.parametrize(("k", "sets_shown"), [(4, "all"), (8, "dimension")])
def test_shared_scoring_prompts_fit_the_embedded_models_context(k, sets_shown, local_model):
    """The bench's realistic lengths (a persona, 8 memories, 5 criteria of ~34 tokens,
    a 150-word reply), counted by the embedded model's tokenizer: the longest prompt
    plus the judge's answer budget fits the default context."""
    import asyncio

    from attunement.llm.options import DEFAULT_N_CTX
    from attunement.perf.judge import RealisticJudge
    from attunement.perf.synthetic import bench_batch

    simulated, prompts = RealisticJudge(), []

    def respond(request, index):
        prompts.append(request.message_dicts)
        fmt = {"type": "json_schema"} if request.json_schema else None
        return simulated(request.message_dicts, index, {"response_format": fmt})

    reward = load_reward(
        "peregrm", ScriptedChatModel(respond), k=k, output="text", sets_shown=sets_shown
    )
    examples, replies = bench_batch(1, 1)
    asyncio.run(reward.score(examples[0], replies))
    longest = max(sum(local_model.count_tokens(m["content"]) for m in p) for p in prompts)
    assert longest + reward.config.max_tokens <= DEFAULT_N_CTX, longest


def test_an_empty_judged_text_is_named_for_what_it_is():
    from attunement.judging.templates import NO_ANALYSIS, NO_RESPONSE, fenced_judged

    assert fenced_judged("analysis", " \n") == f"<analysis>\n{NO_ANALYSIS}\n</analysis>"
    assert fenced_judged("response", "") == f"<response>\n{NO_RESPONSE}\n</response>"
    assert fenced_judged("response", "Here.") == "<response>\nHere.\n</response>"


@pytest.mark.parametrize("include_memories", [True, False])
def test_the_criteria_writer_reads_the_user_as_the_scorer_does(include_memories):
    """Criteria and scoring prompts share their start, the user's record included:
    without memories for the judges, the criteria writer does not see them either."""
    ex = example(dialogue=False)
    reward = load_reward(
        "peregrm",
        ScriptedChatModel(outputs=[]),
        use_bystander=False,
        include_memories=include_memories,
    )
    for prompt in reward.probe_prompts(ex, reply(1)):
        text = flat(prompt)
        assert all((m.value in text) == include_memories for m in ex.memories)
