"""What the build does as the paper and the authors' scripts do, and where it differs
by declaration: no language hint to the inspector, Big Five levels without a bias
to "medium", the last turns quoted, [ERROR]-only users named, the keyword count,
the held-out cluster's size, mixed-language users and the query's own language."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from build_scripted import QUERIES, default_answer, scripted_builder, stage_of
from typer.testing import CliRunner

from attunement.building import FilterRules, build_dataset, filter_user, load_users
from attunement.building.filters import AUTHORS_RULES
from attunement.building.language import identify_language
from attunement.cli import build_app
from attunement.jsonl import read_jsonl
from attunement.prompts import load_prompt
from attunement.records import Example, MemoryItem, Session, Turn, UserHistory

DOCS = Path(__file__).resolve().parents[1] / "docs" / "building.md"
MEMORIES = [
    MemoryItem(memory_id="m1", value="Her mother is ill and far away", label="Social_Relationships/Family"),
    MemoryItem(memory_id="m2", value="Feels lonely since the move", label="States_Experiences/Mental_State"),
]  # fmt: skip


def _user(user_id: str, turns: list[str], language: str = "en") -> UserHistory:
    session = Session(
        session_id=f"{user_id}#1",
        turns=[t for x in turns for t in (Turn(role="user", text=x), Turn(role="assistant", text="OK."))],
    )  # fmt: skip
    return UserHistory(user_id=user_id, language=language, sessions=[session], memories=MEMORIES)


def _prompt_of(model, stage: str) -> str:
    return next(c.messages[-1][1] for c in model.calls if stage_of(c) == stage)


# --------------------------------------------------------------------------- prompts


async def test_the_inspector_labels_the_language_with_no_hint(tmp_path):
    user = _user(
        "u-es", ["Estoy muy triste porque mi madre está enferma y vive lejos de mí."], "es"
    )
    model = scripted_builder()
    await build_dataset([user], tmp_path, model, show_progress=False)
    prompt = _prompt_of(model, "inspect")
    assert "Spanish" not in prompt and "writes in" not in prompt
    # the verdict's language check still compares its label with the user's language
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert examples and all(e.meta["inspection_checks"]["language"] for e in examples)


def test_the_big_five_prompt_does_not_push_thin_evidence_to_medium():
    text = "\n".join(body for _, body in load_prompt("build_bigfive").messages).lower()
    assert text.count("medium") == 2  # the three levels are named, twice; no rule for it
    assert 'choose "medium"' not in text


async def test_prompts_quote_the_users_last_turns_as_the_authors(tmp_path):
    turns = [f"Message number {i:02d}: I keep thinking about my mother." for i in range(1, 21)]
    model = scripted_builder()
    await build_dataset([_user("u1", turns)], tmp_path, model, show_progress=False)
    persona, query = _prompt_of(model, "persona"), _prompt_of(model, "queries")
    shown = sorted(int(n) for n in re.findall(r"Message number (\d+)", persona))
    assert shown == list(range(9, 21))  # the last 12
    assert sorted(int(n) for n in re.findall(r"Message number (\d+)", query)) == list(
        range(16, 21)
    )  # the last 5


# --------------------------------------------------------------------------- filter


def test_a_user_whose_every_memory_carries_an_error_tag_is_rejected_for_that(tmp_path):
    packet = {
        "session_id": "s-err",
        "dialogue": [{"role": "user", "text": "Write a role-play scene for me."}],
        "task1": {
            "ground_truth_memories": [
                {"memory_id": "m1", "value": "[ERROR: Role-play, not the user] Is a knight"},
                {"memory_id": "m2", "value": "Loves dragons [ERROR: fiction]"},
            ]
        },
    }
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(packet) + "\n")
    [user] = load_users(f"alpsbench-packets:{path}")
    decision = filter_user(user, FilterRules())
    assert decision.reason_code == "filter.error_tags_only"
    assert "all 2 memory items carry an annotator's [ERROR: ...] tag" in decision.reason
    assert "--error-tags" in decision.reason


def test_the_docs_give_the_authors_keyword_count():
    n = len(AUTHORS_RULES["keywords"])
    assert n == 157 and len(set(AUTHORS_RULES["keywords"])) == n
    assert f"from their list of {n}" in DOCS.read_text()


def test_every_difference_from_the_authors_is_declared():
    table = DOCS.read_text().split("## Differences from the authors' scripts", 1)[1]
    for row in (
        "inspection language",
        "Big Five prompt",
        "turns quoted",
        "`[ERROR]` memory items",
        "personal data",
        "OOD held-out cluster",
        "length limits",
        "redo of a rejected query",
        "user language",
    ):
        assert f"| {row} |" in table, row


def test_the_split_says_which_cluster_it_holds_out_and_how_large(tmp_path):
    levels = [("high",) * 5, ("low",) * 5, ("medium",) * 5]
    rows = []
    for i in range(9):
        bf = dict(zip(("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"), levels[0 if i < 5 else 1 if i < 8 else 2], strict=True))  # fmt: skip
        rows.append(
            Example(
                example_id=f"u{i}:ES",
                user_id=f"u{i}",
                query="q",
                persona={"profile": "p", "big_five": bf},
            ).model_dump_json()
        )
    data = tmp_path / "examples.jsonl"
    data.write_text("\n".join(rows) + "\n")
    app = build_app()
    res = CliRunner().invoke(
        app, ["split", "--data", str(data), "--mode", "ood", "--clusters", "3", "--dry-run"]
    )
    assert res.exit_code == 0, res.output
    assert "held out: cluster 0 (the largest of 3), 5 of 9 users (56%)" in res.output
    assert "the smallest cluster holds 1 (11%)" in res.output


# --------------------------------------------------------------------------- languages


def test_a_user_who_writes_russian_around_a_pasted_english_letter_is_russian():
    turns = [
        (
            "Пожалуйста, переведи это письмо и сделай его вежливее. Dear Mr. Smith, I am "
            "writing to tell you that the shipment was delayed by two weeks because of the "
            "strike at the port. We apologise for the trouble. Best regards, Ivan"
        ),
        "Исправь ошибки: I has been working here since three years and I wants a raise.",
        "Спасибо, теперь сделай его короче, пожалуйста.",
    ]
    assert identify_language(turns, "en").language == "ru"
    # a turn that is only a pasted letter (or code) has no words of the user at all
    pasted = [
        "Hazme esta carta más amable, por favor, es para mi jefe.",
        (
            "Dear Ms. Brown,\nI would like to ask for two days of leave next week because my "
            "mother is in hospital.\nKind regards,\nLucía"
        ),
        "def leave(days):\n    return days * 2\nprint(leave(2))",
        (
            "Dear Ms. Brown,\nThank you for your quick answer and for your kindness these days."
            "\nBest regards,\nLucía"
        ),
    ]
    assert identify_language(pasted, "en").language == "es"
    english_only_quote = [
        "My grandmother wrote «Я тебя люблю» on the card, what does it mean exactly?",
        "Thanks, that made me cry a little, I miss her so much.",
    ]
    assert identify_language(english_only_quote, "en").language == "en"


async def test_the_example_language_is_the_querys_and_user_language_the_users(tmp_path):
    russian = _user(
        "u-ru",
        [
            (
                "Пожалуйста, переведи это письмо. Dear Mr. Smith, I am writing to tell you "
                "that the shipment was delayed by two weeks. Best regards, Ivan"
            ),
            "Спасибо, я так устала на этой работе и скучаю по маме.",
        ],
    )
    [ru] = load_users_from([russian], tmp_path)
    assert ru.language == "ru"

    def queries(request, index):  # a model that answers in English whatever it is asked
        data = json.loads(default_answer(request, index))
        return json.dumps({**data, "query": QUERIES["en"].format(cat="ES")})

    model = scripted_builder({"queries": queries})
    await build_dataset([ru], tmp_path / "out", model, show_progress=False)
    assert "in Russian (ru)" in _prompt_of(model, "queries")
    examples = read_jsonl(tmp_path / "out" / "examples.jsonl", Example)
    assert examples and all(e.language == "en" and e.user_language == "ru" for e in examples)
    rows = [json.loads(x) for x in (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()]
    assert {(r["language"], r["user_language"]) for r in rows} == {("en", "ru")}


def load_users_from(users: list[UserHistory], tmp_path: Path) -> list[UserHistory]:
    """The users as a chat-log source would import them (language identified)."""
    path = tmp_path / "chat.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "session_id": u.user_id,
                    "dialogue": [{"role": t.role, "text": t.text} for t in u.sessions[0].turns],
                    "task1": {"ground_truth_memories": [m.model_dump() for m in u.memories]},
                },
                ensure_ascii=False,
            )
            + "\n"
            for u in users
        ),
        encoding="utf-8",
    )
    return load_users(f"alpsbench-packets:{path}")


EXAMPLE_USERS = resources.files("attunement").joinpath("data/example_users.jsonl")
