"""Any language: lengths in scripts without spaces, the user's language from their turns."""

from __future__ import annotations

import json

import pytest
from build_scripted import default_answer, scripted_builder

from attunement.building import build_dataset, load_stage_records, load_users
from attunement.building.augment import EDRow, augment_row
from attunement.building.language import identify_language, language_name, text_units
from attunement.building.llm_io import StageSettings
from attunement.jsonl import read_jsonl
from attunement.records import Example, MemoryItem, Session, Turn, UserHistory


def _user(user_id: str, turns: list[str], language: str = "en") -> UserHistory:
    memories = [
        MemoryItem(
            memory_id="m1",
            value="Her mother is ill and lives far away",
            label="Social_Relationships/Family",
        ),
        MemoryItem(
            memory_id="m2",
            value="Feels lonely since moving for work",
            label="States_Experiences/Mental_State",
        ),
    ]
    session = Session(
        session_id=f"{user_id}#1",
        turns=[
            t
            for text in turns
            for t in (Turn(role="user", text=text), Turn(role="assistant", text="OK."))
        ],
    )
    return UserHistory(user_id=user_id, language=language, sessions=[session], memories=memories)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("I feel so alone tonight", 5),
        ("我最近压力很大", 7),
        ("今日はとても疲れました", 11),
        ("ฉันรู้สึกเหงามาก", 6),
        ("我很累 but OK", 5),
    ],
)
def test_text_units_count_characters_of_scripts_without_spaces(text, units):
    assert text_units(text) == units


async def test_chinese_persona_situation_and_query_are_not_too_short(tmp_path):
    def persona(request, index):
        return json.dumps(
            {
                "profile": "她很关心家人，最近因为母亲生病而焦虑 [m1]。",
                "topics": ["家人"],
                "is_deep": True,
                "gate_reason": "记忆中有明确的情感背景。",
            }
        )

    def situations(request, index):
        data = json.loads(default_answer(request, index))
        for decision in data.values():
            decision["situations"][0]["description"] = "她今天接到电话，母亲又住院了，她很担心。"
        return json.dumps(data)

    def queries(request, index):
        data = json.loads(default_answer(request, index))
        data["query"] = "我妈妈又住院了，我好担心。"  # 12 characters, no space at all
        return json.dumps(data)

    model = scripted_builder({"persona": persona, "situations": situations, "queries": queries})
    user = _user("u-zh", ["我最近压力很大，睡不着，妈妈生病了，我一个人在外地工作。"])
    report = await build_dataset([user], tmp_path, model, show_progress=False)
    assert report.rejection_reasons == {}
    assert report.accepted == 3
    for stage in ("persona", "situations", "queries"):
        assert all(r.attempts == 1 for r in load_stage_records(tmp_path, stage)), stage


async def test_augment_accepts_a_chinese_scenario():
    row = EDRow(conv_id="c1", emotion="sad", situation="妈妈生病了", utterance="我很难过")
    answer = json.dumps(
        {
            "scenario": "小林的母亲突然住院，她一个人在外地，既担心又自责。",
            "name": "小林",
            "age": 28,
            "gender": "女",
            "occupation": "护士",
        }
    )
    model = scripted_builder({"augment": lambda request, index: answer})
    rec = await augment_row(model, row, StageSettings(max_tokens=300))
    assert rec.status == "ok" and rec.attempts == 1


@pytest.mark.parametrize(
    ("turns", "language"),
    [
        # a Spanish speaker who pastes an English document
        (
            [
                "Hola, necesito ayuda con una carta para mi jefe, estoy muy nerviosa.",
                (
                    "Dear Mr. Smith, I am writing to request two weeks of leave in August because my "
                    "mother is having surgery and I need to take care of her during her recovery. "
                    "I have arranged for my colleagues to cover my shifts and will be reachable by e-mail."
                ),
                "Gracias, ¿puedes hacerla más corta y amable?",
                "Perfecto, muchas gracias por tu paciencia, de verdad.",
            ],
            "es",
        ),
        # an English speaker who quotes a line of Spanish
        (
            [
                "Can you help me understand what my Spanish teacher wrote on my essay?",
                "She wrote: 'Muy bien, pero cuidado con los acentos'. Is that good or bad?",
                "Thanks, I was worried she was disappointed in me.",
            ],
            "en",
        ),
        (
            [
                "Je suis épuisée, mon travail me prend toute mon énergie.",
                "Est-ce que tu peux m'aider à écrire un message à ma sœur ?",
            ],
            "fr",
        ),
        (
            [
                "Ich fühle mich in letzter Zeit sehr einsam, seit ich umgezogen bin.",
                "Wie kann ich neue Freunde finden?",
            ],
            "de",
        ),
        (
            [
                "Son zamanlarda kendimi çok yalnız hissediyorum ve uyuyamıyorum.",
                "Annemle konuşmam gerekiyor ama nasıl başlayacağımı bilmiyorum.",
            ],
            "tr",
        ),
        (
            [
                "Dạo này tôi cảm thấy rất mệt mỏi và buồn vì công việc.",
                "Tôi nên nói chuyện với mẹ tôi như thế nào?",
            ],
            "vi",
        ),
        # Chinese turns around a pasted block of English code
        (
            [
                "帮我看看这段代码为什么报错",
                "def f(x):\n    return x + 1\nprint(f('a'))",
                "谢谢，我今天被老板骂了，心情很差。",
            ],
            "zh",
        ),
    ],
)
def test_language_is_identified_from_the_users_own_turns(turns, language):
    assert identify_language(turns, "en").language == language


def test_language_falls_back_to_the_default_without_evidence():
    assert identify_language(["ok", "thx", "👍"], "fr").language == "fr"


@pytest.mark.parametrize(
    ("turns", "language"),
    [
        (["Estoy muy triste hoy porque mi perro está enfermo y no sé qué hacer."], "es"),
        (["我最近压力很大，睡不着，不知道该怎么办。"], "zh"),
    ],
)
async def test_queries_are_asked_and_exported_in_the_users_language(tmp_path, turns, language):
    source = tmp_path / "chat.jsonl"
    memories = _user("x", []).memories
    user = _user("u1", turns)
    source.write_text(
        json.dumps(
            {
                "session_id": "u1",
                "dialogue": [{"role": t.role, "text": t.text} for t in user.sessions[0].turns],
                "task1": {"ground_truth_memories": [m.model_dump() for m in memories]},
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    [imported] = load_users(f"alpsbench-packets:{source}")
    assert imported.language == language
    assert imported.meta["language_detection"]["method"] == "langid"

    model = scripted_builder()
    await build_dataset(f"alpsbench-packets:{source}", tmp_path / "out", model, show_progress=False)
    query_prompts = [c.messages[-1][1] for c in model.calls if c.json_schema["title"] == "queries"]
    assert query_prompts and all(
        f"in {language_name(language)} ({language})" in p for p in query_prompts
    )
    examples = read_jsonl(tmp_path / "out" / "examples.jsonl", Example)
    assert examples and all(e.language == language for e in examples)
