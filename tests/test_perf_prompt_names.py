"""Tracing a request back to its prompt template: by the template's own fixed
opening, so the simulated judge routes by prompt name and survives any rewording."""

from __future__ import annotations

import pytest

from attunement.llm.wire import with_schema_instruction
from attunement.perf.judge import ANSWER_KINDS, RealisticJudge, judge_prompts
from attunement.perf.prompt_names import PromptIndex
from attunement.prompts import PromptTemplate, load_prompt, parse_template


def rendered(template: PromptTemplate) -> list[dict]:
    return template.render(**{p: f"<value of {p}>" for p in template.placeholders})


@pytest.mark.parametrize("name", sorted(ANSWER_KINDS))
def test_every_judge_prompt_is_traced_to_its_name(name):
    messages = rendered(load_prompt(name))
    assert judge_prompts().identify(messages) == name
    # a server without a JSON mode gets the schema written at the end of the prompt
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    assert judge_prompts().identify(with_schema_instruction(messages, schema)) == name


def _reworded(template: PromptTemplate) -> PromptTemplate:
    """The same template with every message's text rewritten around its placeholders."""
    text = "".join(
        f"=== {role} ===\nReworded {template.name} {role} message. "
        + " ".join(f"${{{p}}}" for p in sorted(template.placeholders) if f"${{{p}}}" in body)
        + "\n"
        for role, body in template.messages
    )
    return parse_template(template.name, text)


def test_rewording_a_prompt_file_moves_its_opening_with_it():
    originals = [load_prompt(name) for name in sorted(ANSWER_KINDS)]
    reworded = [_reworded(t) for t in originals]
    index = PromptIndex(reworded)
    for old, new in zip(originals, reworded, strict=True):
        assert index.identify(rendered(new)) == new.name
        assert index.identify(rendered(old)) is None  # nothing was copied from the old wording


def test_the_longest_matching_opening_wins():
    short = parse_template("short", "=== user ===\nRate ${x}")
    long = parse_template("long", "=== user ===\nRate the reply ${x}")
    index = PromptIndex([short, long])
    assert index.identify(long.render(x="kindly")) == "long"
    assert index.identify(short.render(x="this")) == "short"
    assert index.identify([{"role": "system", "content": "Rate the reply"}]) is None  # role


def test_a_whole_message_must_arrive_unchanged():
    t = parse_template("t", "=== system ===\nBe brief, costs $$5.\n=== user ===\n${q}")
    index = PromptIndex([t])
    assert index.identify(t.render(q="hi")) == "t"  # "$$" renders as "$"
    changed = [{"role": "system", "content": "Be brief, costs $5. And more."}]
    assert index.identify(changed + t.render(q="hi")[1:]) is None


def test_templates_that_cannot_be_told_apart_are_refused():
    a = parse_template("a", "=== system ===\nSame.\n=== user ===\nAsk ${x}")
    b = parse_template("b", "=== system ===\nSame.\n=== user ===\nAsk ${y} twice")
    with pytest.raises(ValueError, match="'a' and 'b' open alike"):
        PromptIndex([a, b])
    bare = parse_template("bare", "=== user ===\n${x} first")
    with pytest.raises(ValueError, match="starts with a placeholder"):
        PromptIndex([bare])


def test_the_simulated_judge_refuses_a_prompt_it_does_not_know():
    judge = RealisticJudge()
    with pytest.raises(ValueError, match="came from none of them"):
        judge(rendered(load_prompt("policy_reply")), 0, {})
    assert judge.kinds == {}
