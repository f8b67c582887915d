"""Batch generation: records, memory modes end to end, resume, manifest."""

from __future__ import annotations

import json
import re

import pytest

from attunement.jsonl import manifest_path, read_jsonl
from attunement.llm import LLMError, ScriptedChatModel, Step
from attunement.policy import generate_replies, reply_prompt_version
from attunement.policy.prompting import MEMORY_HEADING, SUMMARY_HEADING
from attunement.records import Example, MemoryItem, Reply

USERS = {
    "ana": [
        "Ana adopted a rescue dog named Pico",
        "Ana is training for a marathon",
        "Ana's father had heart surgery in May",
        "Ana sings in a choir",
    ],
    "ben": ["Ben teaches at a rural school", "Ben's partner lives in another city"],
}


def make_examples() -> list[Example]:
    out = []
    for user, values in USERS.items():
        memories = [MemoryItem(memory_id=f"{user}{i}", value=v) for i, v in enumerate(values)]
        for j, query in enumerate(
            [
                "My dog Pico is sick and the vet bill scares me",
                "I miss having someone to talk to at night",
            ]
        ):
            out.append(
                Example(
                    example_id=f"{user}-{j}",
                    user_id=user,
                    query=f"{query} (from {user})",
                    memories=memories,
                )
            )
    return out


def well_formed(request, index) -> str:
    return f"# Analysis\nthinking {index}\n# Response\nreply {index}"


def user_turn(request) -> str:
    return request.messages[-1][1]


def query_of(request) -> str:
    return re.search(r"## The user's message\n(.+)", user_turn(request)).group(1)


async def test_writes_n_replies_per_example_in_one_request_each(tmp_path):
    examples = make_examples()
    policy = ScriptedChatModel(well_formed, name="scripted-policy")
    out = tmp_path / "replies.jsonl"
    report = await generate_replies(
        examples, policy, out, n=3, temperature=0.9, seed=5, max_tokens=77
    )
    replies = read_jsonl(out, Reply)
    assert report.replies_written == len(replies) == 12 and report.already_done == 0
    assert len(policy.calls) == 4
    assert all(
        c.n == 3
        and c.sample_start == 0
        and c.temperature == 0.9
        and c.seed == 5
        and c.max_tokens == 77
        for c in policy.calls
    )
    by_id = {r.reply_id: r for r in replies}
    r = by_id["ana-1:full:2"]
    assert (r.example_id, r.sample_index, r.memory_mode, r.policy) == (
        "ana-1",
        2,
        "full",
        "scripted-policy",
    )
    assert (r.analysis, r.response, r.format_ok) == ("thinking 2", "reply 2", True)
    assert r.raw.startswith("# Analysis") and r.completion_tokens > 0
    assert report.usage.calls == 4 and report.usage.completion_tokens > 0


async def test_malformed_replies_are_kept_and_counted(tmp_path):
    policy = ScriptedChatModel(
        lambda req, i: "just a plain answer" if i == 1 else well_formed(req, i)
    )
    out = tmp_path / "r.jsonl"
    report = await generate_replies(make_examples()[:2], policy, out, n=2)
    replies = read_jsonl(out, Reply)
    assert report.format_failures == 2
    bad = [r for r in replies if not r.format_ok]
    assert [r.sample_index for r in bad] == [1, 1]
    assert all(r.response == "just a plain answer" and r.analysis == "" for r in bad)


async def test_resume_asks_only_for_missing_samples(tmp_path):
    examples = make_examples()
    out = tmp_path / "replies.jsonl"

    def flaky(request, index):  # examples run in order: ana-0 succeeds, ana-1 fails
        if query_of(request) == examples[1].query:
            return LLMError("server went away")
        return well_formed(request, index)

    first = await generate_replies(examples, ScriptedChatModel(flaky), out, n=2, concurrency=1)
    assert [f.key for f in first.failed] == [examples[1].example_id]  # recorded, not raised
    assert "went away" in first.failed[0].reason
    kept = read_jsonl(out, Reply)
    # the other examples went on, and finished work survived the failure
    assert {r.example_id for r in kept} == {e.example_id for e in examples} - {"ana-1"}

    # a torn last line (killed mid-write) is repaired, and the failed example redone
    with out.open("a") as fh:
        fh.write('{"example_id": "ben-0", "reply_id": "ben-0:fu')
    healthy = ScriptedChatModel(well_formed)
    report = await generate_replies(examples, healthy, out, n=2, concurrency=1)
    assert report.already_done == 6 and report.replies_written == 2 and report.failed == []
    assert [query_of(c) for c in healthy.calls] == [examples[1].query]
    replies = read_jsonl(out, Reply)
    assert len({r.reply_id for r in replies}) == len(replies) == 8

    # asking for more samples later fetches only the new sample numbers
    more = ScriptedChatModel(well_formed)
    report = await generate_replies(examples, more, out, n=3)
    assert report.replies_written == 4 and report.already_done == 8
    assert all(c.sample_start == 2 and c.n == 1 for c in more.calls)
    # and a complete file costs nothing
    idle = ScriptedChatModel(well_formed)
    report = await generate_replies(examples, idle, out, n=3)
    assert idle.calls == [] and report.replies_written == 0


async def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    await generate_replies(make_examples(), ScriptedChatModel(well_formed), out)
    with pytest.raises(ValueError, match="other settings.*temperature: 0.7 -> 0.2"):
        await generate_replies(
            make_examples(), ScriptedChatModel(well_formed), out, temperature=0.2
        )
    with pytest.raises(ValueError, match="memory"):
        await generate_replies(
            make_examples(), ScriptedChatModel(well_formed), out, memory_mode="none"
        )


async def test_manifest_records_settings_and_prompt_version(tmp_path):
    out = tmp_path / "replies.full.jsonl"
    report = await generate_replies(
        make_examples(), ScriptedChatModel(well_formed), out, seed=3, memory_mode="mismatch"
    )
    assert report.manifest == manifest_path(out) == tmp_path / "replies.full.manifest.json"
    doc = json.loads(report.manifest.read_text())
    assert doc["status"] == "complete"
    settings = doc["settings"]
    assert settings["prompt"] == {"policy_reply": reply_prompt_version()}
    assert settings["memory"] == {"mode": "mismatch", "seed": 3, "pool_users": 2}
    assert (settings["seed"], settings["policy"], settings["max_tokens"]) == (3, "scripted", 1024)
    assert doc["report"]["replies_written"] == 4


async def test_duplicate_example_ids_are_refused(tmp_path):
    ex = make_examples()[0]
    with pytest.raises(ValueError, match="duplicate example_id 'ana-0'"):
        await generate_replies([ex, ex], ScriptedChatModel(well_formed), tmp_path / "r.jsonl")


async def test_concurrency_is_bounded(tmp_path):
    examples = [Example(example_id=f"e{i}", query=f"q{i}") for i in range(12)]
    policy = ScriptedChatModel(lambda r, i: Step(well_formed(r, i), delay=0.01))
    await generate_replies(examples, policy, tmp_path / "r.jsonl", concurrency=3)
    assert policy.peak_in_flight == 3


# --------------------------------------------------------------------------- modes


async def run_mode(tmp_path, mode: str, **kw) -> tuple[ScriptedChatModel, list[Reply]]:
    policy = ScriptedChatModel(
        rules=[
            ("Describe this user", "- Loves animals; tired"),
            ("The user's message", "# Analysis\na\n# Response\nr"),
        ]
    )
    out = tmp_path / f"{mode}.jsonl"
    await generate_replies(make_examples(), policy, out, memory_mode=mode, **kw)
    return policy, read_jsonl(out, Reply)


async def test_every_mode_reaches_the_prompt(tmp_path):
    # full: the user's own memories
    policy, replies = await run_mode(tmp_path, "full")
    for call in policy.calls:
        asker = re.search(r"\(from (\w+)\)", query_of(call)).group(1)
        context = user_turn(call).split("## The user's message")[0]
        assert context.count(f"\n- [{asker}") == len(USERS[asker])
        assert "- [ana" not in context or "- [ben" not in context
    assert {r.memory_mode for r in replies} == {"full"}

    # none: no memory section at all
    policy, _ = await run_mode(tmp_path, "none")
    assert all(
        MEMORY_HEADING not in user_turn(c)
        and "Pico" not in user_turn(c).split("## The user's message")[0]
        for c in policy.calls
    )

    # mismatch: always the other user's memories (see the next test)
    policy, replies = await run_mode(tmp_path, "mismatch")
    assert all(r.reply_id.endswith(":mismatch:0") for r in replies)

    # summary: the summariser is called once per user, the prompt shows the summary
    policy, _ = await run_mode(tmp_path, "summary")
    summary_calls = [c for c in policy.calls if "Describe this user" in user_turn(c)]
    reply_calls = [c for c in policy.calls if "The user's message" in user_turn(c)]
    assert len(summary_calls) == 2 and len(reply_calls) == 4
    assert all(
        f"## {SUMMARY_HEADING}\n<memory_summary>\n- Loves animals; tired" in user_turn(c)
        and MEMORY_HEADING not in user_turn(c)
        for c in reply_calls
    )

    # rag: the 3 best memory items for the query
    policy, _ = await run_mode(tmp_path, "rag")
    pico = next(
        c for c in policy.calls if "[ana0]" in user_turn(c) and "Pico is sick" in query_of(c)
    )
    assert user_turn(pico).count("\n- [ana") == 3
    assert user_turn(pico).index("[ana0]") < user_turn(pico).index("## The user's message")


async def test_mismatch_prompts_hold_only_the_other_users_memories(tmp_path):
    policy, _ = await run_mode(tmp_path, "mismatch")
    assert len(policy.calls) == 4
    for call in policy.calls:
        asker = re.search(r"\(from (\w+)\)", query_of(call)).group(1)
        other = "ben" if asker == "ana" else "ana"
        context = user_turn(call).split("## The user's message")[0]
        assert f"[{asker}" not in context
        assert context.count(f"\n- [{other}") == len(USERS[other])
        assert f"- [{other}0]" in context


async def test_separate_summariser_and_prompts_file(tmp_path):
    policy = ScriptedChatModel(well_formed)
    summariser = ScriptedChatModel(rules=[("Describe this user", "- Kind")], name="summ")
    prompts = tmp_path / "prompts.jsonl"
    await generate_replies(
        make_examples(),
        policy,
        tmp_path / "r.jsonl",
        memory_mode="summary",
        summarizer=summariser,
        prompts_out=prompts,
    )
    assert len(summariser.calls) == 2 and len(policy.calls) == 4
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    assert sorted(r["example_id"] for r in rows) == ["ana-0", "ana-1", "ben-0", "ben-1"]
    row = next(r for r in rows if r["example_id"] == "ben-0")
    assert row["summary"] == "- Kind" and row["memory_ids"] == []
    assert row["messages"][1]["content"].endswith(policy.calls[0].messages[-1][1][-40:])


async def test_persona_is_shown_only_when_asked(tmp_path):
    from attunement.records import Persona

    ex = Example(example_id="p", query="hello", persona=Persona(profile="Retired sailor"))
    policy = ScriptedChatModel(well_formed)
    await generate_replies([ex], policy, tmp_path / "without.jsonl")
    await generate_replies([ex], policy, tmp_path / "with.jsonl", with_persona=True)
    assert "Retired sailor" not in user_turn(policy.calls[0])
    assert "Retired sailor" in user_turn(policy.calls[1])


# --------------------------------------------------------------------------- ablations


def examples_with_context() -> list[Example]:
    from attunement.records import Persona, Situation

    out = []
    for user, fact in (
        ("ana", "father had two heart surgeries"),
        ("ben", "partner moved to another city"),
    ):
        memories = [MemoryItem(memory_id=f"{user}0", value=f"Her {fact}")]
        for j, cat in enumerate(("ES", "SS")):
            out.append(
                Example(
                    example_id=f"{user}-{j}",
                    user_id=user,
                    category=cat,
                    query=f"I can't sleep again, {cat} (from {user})",
                    memories=memories,
                    persona=Persona(profile=f"Someone whose {fact} ({user} persona)."),
                    situation=Situation(
                        category=cat,
                        description=f"Tonight the {fact} weighs on them ({user} {cat} situation).",
                    ),
                )
            )
    return out


async def test_ablations_show_nothing_memory_derived_of_the_real_user(tmp_path):
    examples = examples_with_context()
    policy = ScriptedChatModel(well_formed)
    await generate_replies(examples, policy, tmp_path / "none.jsonl", memory_mode="none")
    for call in policy.calls:  # the default prompt is memory and query only
        context = user_turn(call).split("## The user's message")[0]
        assert "heart surgeries" not in context and "another city" not in context
        assert "persona" not in context and "situation)" not in context

    policy = ScriptedChatModel(well_formed)
    await generate_replies(
        examples,
        policy,
        tmp_path / "mm.jsonl",
        memory_mode="mismatch",
        with_persona=True,
        with_situation=True,
    )
    for call in policy.calls:
        asker = re.search(r"\(from (\w+)\)", query_of(call)).group(1)
        other = "ben" if asker == "ana" else "ana"
        context = user_turn(call).split("## The user's message")[0]
        assert f"({asker} persona)" not in context and f"({asker} " not in context
        assert f"({other} persona)" in context
        # the other user's situation of the same category
        cat = re.search(r"again, (\w+) \(from", query_of(call)).group(1)
        assert f"({other} {cat} situation)" in context

    policy = ScriptedChatModel(well_formed)
    await generate_replies(
        examples, policy, tmp_path / "full.jsonl", with_persona=True, with_situation=True
    )
    assert all("(ana persona)" in user_turn(c) for c in policy.calls if "(from ana)" in query_of(c))
    doc = json.loads((tmp_path / "full.manifest.json").read_text())
    assert doc["settings"]["with_persona"] is True and doc["settings"]["with_situation"] is True


async def test_distill_takes_the_same_switches_and_carries_earlier_turns(tmp_path):
    from attunement.policy import distill
    from attunement.records import Turn

    dialogue = [
        Turn(role="user", text="My dad is in hospital again."),
        Turn(role="assistant", text="I'm so sorry. How are you holding up?"),
    ]
    examples = [e.model_copy(update={"dialogue": dialogue}) for e in examples_with_context()]
    teacher = ScriptedChatModel(well_formed)
    report = await distill(examples, teacher, tmp_path / "sft.jsonl", with_persona=True)
    assert report.rows == 4
    row = json.loads((tmp_path / "sft.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "user"]
    assert row["prompt"][1]["content"] == "My dad is in hospital again."
    assert "persona)" in row["prompt"][-1]["content"]  # --with-persona reached the prompt
    assert all(len(c.messages) == 4 for c in teacher.calls)

    plain = ScriptedChatModel(well_formed)
    await distill(examples, plain, tmp_path / "plain.jsonl")
    assert all("persona)" not in c.messages[-1][1] for c in plain.calls)
