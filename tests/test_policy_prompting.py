"""The policy's reply prompt and the reply parser."""

from __future__ import annotations

import re

import pytest

from attunement.policy.prompting import (
    MEMORY_HEADING,
    SUMMARY_HEADING,
    parse_reply,
    prompt_versions,
    render_reply_messages,
    render_summary_messages,
    reply_prompt_version,
)
from attunement.prompts import load_prompt
from attunement.records import BigFive, Example, MemoryItem, Persona, Situation

MEMORIES = [
    MemoryItem(
        memory_id="m1",
        value="Her younger brother Tomas moved abroad last spring",
        label="Social_Relationships/Family",
    ),
    MemoryItem(memory_id="m2", value="Works night shifts as a nurse"),
]


def full_example(**changes) -> Example:
    base = {
        "example_id": "ex1",
        "user_id": "u1",
        "query": "Nobody at home even noticed my birthday today.",
        "category": "ES",
        "situation": Situation(
            category="ES", description="Her birthday went unmarked by family.", emotion="hurt"
        ),
        "persona": Persona(
            profile="A nurse in her thirties who looks after everyone but herself.",
            big_five=BigFive(
                openness="medium",
                conscientiousness="high",
                extraversion="low",
                agreeableness="high",
                neuroticism="medium",
            ),
        ),
        "memories": MEMORIES,
    }
    base.update(changes)
    return Example(**base)


def headings(text: str) -> list[str]:
    return re.findall(r"^#+ (.+)$", text, re.MULTILINE)


def assert_no_empty_sections(text: str) -> None:
    """Every '## ' heading is followed by some non-heading text before the next one."""
    blocks = re.split(r"^## .*$", text, flags=re.MULTILINE)[1:]
    for heading, block in zip(headings_of_level(text, 2), blocks, strict=True):
        assert block.strip() and not block.strip().startswith("#"), f"empty section {heading!r}"


def headings_of_level(text: str, level: int) -> list[str]:
    return re.findall(rf"^{'#' * level} (.+)$", text, re.MULTILINE)


# --------------------------------------------------------------------------- prompt


def test_prompt_has_system_and_user_turn_with_every_part():
    messages = render_reply_messages(full_example(), None, persona=True, situation=True)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Nobody at home even noticed my birthday today." in user
    assert "A nurse in her thirties" in user
    assert "- Extraversion: low" in user
    assert "[m1] Her younger brother Tomas moved abroad" in user
    assert "Her birthday went unmarked by family." in user
    # the required format comes last, analysis before response
    assert user.rindex("# Analysis") < user.rindex("# Response")
    assert user.index("## The user's message") > user.index(MEMORY_HEADING)
    assert "${" not in user and "${" not in messages[0]["content"]
    assert_no_empty_sections(user)


@pytest.mark.parametrize("missing", ["persona", "situation", "memories", "all"])
def test_no_empty_section_when_a_field_is_missing(missing):
    changes = (
        {"persona": None, "situation": None, "memories": []}
        if missing == "all"
        else {missing: [] if missing == "memories" else None}
    )
    user = render_reply_messages(full_example(**changes), None, persona=True, situation=True)[1][
        "content"
    ]
    assert_no_empty_sections(user)
    present = headings_of_level(user, 2)
    if missing in ("persona", "all"):
        assert "User profile" not in present
    if missing in ("situation", "all"):
        assert "Current situation" not in present
    if missing in ("memories", "all"):
        assert MEMORY_HEADING not in present
    assert "The user's message" in present
    assert not user.startswith("\n")


def test_explicit_memories_replace_the_examples_own():
    other = [MemoryItem(memory_id="x9", value="Plays the cello in a community orchestra")]
    user = render_reply_messages(full_example(), other)[1]["content"]
    assert "[x9] Plays the cello" in user
    assert "Tomas" not in user
    none = render_reply_messages(full_example(), [])[1]["content"]
    assert MEMORY_HEADING not in none and "Tomas" not in none


def test_summary_is_shown_under_its_own_heading():
    user = render_reply_messages(full_example(), [], summary="- Caring, tired, feels unseen")[1][
        "content"
    ]
    # the summary is a model's text: fenced as data
    assert (
        f"## {SUMMARY_HEADING}\n<memory_summary>\n- Caring, tired, feels unseen\n"
        "</memory_summary>" in user
    )
    assert MEMORY_HEADING not in user


def test_memory_and_query_only_by_default():
    for user in (
        render_reply_messages(full_example(), None)[1]["content"],
        render_reply_messages(full_example(), None, persona=False, situation=False)[1]["content"],
    ):
        assert "A nurse in her thirties" not in user and "unmarked by family" not in user
        assert "Tomas" in user
        assert_no_empty_sections(user)


def test_another_users_persona_and_situation_can_be_shown():
    other = Persona(profile="A retired sailor who misses the sea.")
    where = Situation(category="ES", description="His boat was sold today.")
    user = render_reply_messages(full_example(), [], persona=other, situation=where)[1]["content"]
    assert "retired sailor" in user and "boat was sold" in user
    assert "nurse in her thirties" not in user and "unmarked by family" not in user


def test_earlier_turns_come_as_chat_turns_before_the_final_message():
    from attunement.records import Turn

    dialogue = [
        Turn(role="user", text="I had a rough week at the hospital."),
        Turn(role="assistant", text="I'm sorry. What made it so rough?"),
    ]
    messages = render_reply_messages(full_example(dialogue=dialogue), None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "I had a rough week at the hospital."
    assert messages[2]["content"] == "I'm sorry. What made it so rough?"
    assert "Nobody at home even noticed my birthday" in messages[3]["content"]
    assert "Tomas" in messages[3]["content"]  # the context stays with the final message


def test_prompt_versions_are_file_hashes():
    versions = prompt_versions()
    assert versions["policy_reply"] == reply_prompt_version() == load_prompt("policy_reply").version
    assert re.fullmatch(r"[0-9a-f]{12}", versions["policy_summary"])


def test_summary_prompt_lists_the_memories_and_refuses_none():
    user = render_summary_messages(MEMORIES, max_points=4)[-1]["content"]
    assert "[m2] Works night shifts as a nurse" in user and "4" in user
    with pytest.raises(ValueError, match="empty memory"):
        render_summary_messages([])


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "text",
    [
        "# Analysis\nShe feels forgotten.\n\n# Response\nThat must have stung.",
        "## analysis\nShe feels forgotten.\n### RESPONSE\nThat must have stung.",
        "#Analysis:\nShe feels forgotten.\n#Response:\nThat must have stung.",
        "  # Analysis  \n  She feels forgotten.  \n\n  # Response \n That must have stung.  ",
        "**Analysis:**\nShe feels forgotten.\n**Response:**\nThat must have stung.",
        "Analysis:\nShe feels forgotten.\nResponse:\nThat must have stung.",
        "Sure, here it is.\n# Analysis\nShe feels forgotten.\n# Response\nThat must have stung.",
    ],
)
def test_well_formed_replies(text):
    parsed = parse_reply(text)
    assert parsed.format_ok and parsed.reason is None
    assert parsed.analysis == "She feels forgotten."
    assert parsed.response == "That must have stung."


def test_analysis_text_on_the_heading_line_is_kept():
    parsed = parse_reply("# Analysis: she feels forgotten.\n# Response: That must have stung.")
    assert parsed.format_ok
    assert parsed.analysis == "she feels forgotten."
    assert parsed.response == "That must have stung."


def test_multi_paragraph_response_is_kept_whole():
    parsed = parse_reply("# Analysis\nA.\n# Response\nFirst.\n\nSecond with # sign.\n- list")
    assert parsed.response == "First.\n\nSecond with # sign.\n- list"


def test_word_analysis_inside_prose_is_not_a_heading():
    parsed = parse_reply("Analysis of your week shows you did a lot.\nResponse time matters.")
    assert not parsed.format_ok
    assert parsed.response.startswith("Analysis of your week")


@pytest.mark.parametrize(
    "text, analysis, response",
    [
        (
            "<think>She feels forgotten.</think>\nThat must have stung.",
            "She feels forgotten.",
            "That must have stung.",
        ),
        (
            "<THINK>\nShe feels forgotten.\n</THINK>\n\nThat must have stung.",
            "She feels forgotten.",
            "That must have stung.",
        ),
        # chat templates that open <think> in the prompt leave only the closing tag
        (
            "She feels forgotten.\n</think>\nThat must have stung.",
            "She feels forgotten.",
            "That must have stung.",
        ),
        # a thinking model that also used the headings
        (
            (
                "<think>Birthday.</think>\n# Analysis\nShe feels forgotten.\n"
                "# Response\nThat must have stung."
            ),
            "Birthday.\n\nShe feels forgotten.",
            "That must have stung.",
        ),
        (
            "<think>Birthday.</think>\n# Response\nThat must have stung.",
            "Birthday.",
            "That must have stung.",
        ),
    ],
)
def test_think_style_replies(text, analysis, response):
    parsed = parse_reply(text)
    assert parsed.format_ok, parsed.reason
    assert (parsed.analysis, parsed.response) == (analysis, response)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("That must have stung. I'm sorry.", "no '# Analysis' or '# Response' heading"),
        ("# Analysis\nShe feels forgotten and", "no '# Response' heading after '# Analysis'"),
        ("# Response\nOops\n# Analysis\nlate", "comes before"),
        ("# Analysis\nShe feels forgotten.\n# Response\n   ", "empty '# Response' section"),
        ("<think>She feels forgotten and I should", "never closed"),
        ("<think>She feels forgotten.</think>   ", "nothing after"),
    ],
)
def test_malformed_replies_keep_the_whole_text(text, reason):
    parsed = parse_reply(text)
    assert not parsed.format_ok
    assert reason in parsed.reason
    assert parsed.analysis == ""
    assert parsed.response == text.strip()  # nothing is lost


def test_response_without_analysis_keeps_the_response_section():
    parsed = parse_reply("# Response\nThat must have stung.")
    assert not parsed.format_ok and "no '# Analysis'" in parsed.reason
    assert parsed.analysis == "" and parsed.response == "That must have stung."


def test_empty_think_block_is_flagged_but_response_kept():
    parsed = parse_reply("<think>\n\n</think>\n\nThat must have stung.")
    assert not parsed.format_ok and parsed.reason == "empty '<think>' block"
    assert parsed.response == "That must have stung."


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "#",
        "# Analysis",
        "# Response",
        "<think>",
        "</think>",
        "# Analysis\n# Response",
        "<think></think>",
        "**Analysis**",
    ],
)
def test_a_non_empty_reply_never_gives_an_empty_response(text):
    parsed = parse_reply(text)
    assert parsed.response.strip()
    if not parsed.format_ok:
        assert parsed.reason


def test_empty_reply_is_flagged():
    parsed = parse_reply("   \n")
    assert (parsed.format_ok, parsed.response, parsed.reason) == (False, "", "empty reply")
