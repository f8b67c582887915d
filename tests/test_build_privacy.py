"""Personal data never reaches a prompt or an export; users are built in their language.

The shared AlpsBench packets are English; the end-to-end test makes Chinese and
Spanish variants of some of them (their users' turns rewritten, their contact
details kept) and builds all 60 with a scripted model that writes each query in
the language its prompt asks for.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import pytest
from build_scripted import scripted_builder

from attunement.building import BuildConfig, build_dataset, load_users
from attunement.building.language import detect_text_language
from attunement.building.privacy import scrub_text
from attunement.jsonl import read_jsonl
from attunement.records import Example

EXAMPLE_USERS = resources.files("attunement").joinpath("data/example_users.jsonl")

CONTACT_PACKETS = ("sess_b42cc4f65851", "sess_e8c133f52906", "sess_088e73a8342a")
#: the contact details those three packets carry (in the users' own turns)
CONTACT_DETAILS = (
    "care4kids2@gmail.com",
    "cmccaff1@fau.edu",
    "559-9768",
    "427-8710",
    "18302378068",
    "Spanish River Blvd",
    "33431",
    "Wulidian Street",
    "Wanfeng Second Village",
)


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("Mail me at ana.lopez+work@example.co.uk today", "Mail me at [EMAIL] today"),
        ("call +1 (561) 559-9768 or 18302378068", "call [PHONE] or [PHONE]"),
        ("Llámame al +34 612 345 678", "Llámame al [PHONE]"),
        (
            "our office: 500 NE Spanish River Blvd., Suite 30, Boca Raton, FL, 33431. Thanks",
            "our office: [ADDRESS]. Thanks",
        ),
        (
            "I'm Gou\nWanfeng Second Village, Wulidian Street\nChongqing",
            "I'm Gou\n[ADDRESS]\nChongqing",
        ),
        ("我住在重庆市渝北区金龙路88号，电话18302378068", "[ADDRESS]，电话[PHONE]"),
        (
            "see https://example.org/users/8812?ref=mail and https://example.org",
            "see [URL] and https://example.org",
        ),
        ("passport X12345678, card 4111-1111-1111-1111", "passport [ID], card [ID]"),
        ("ISBN 0-06-082623-1 noted", "ISBN [ID] noted"),
    ],
)
def test_scrub_replaces_contact_details(text, scrubbed):
    assert scrub_text(text)[0] == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "On 2024-03-06 I turned 31; in 2023 I lost 2 parents within 9 days.",
        "It costs 500-1000 dollars, version 3.11.2, at 10:30 on 12/05/2023.",
        "我在北京路上走了很久，心里很难过。",
    ],
)
def test_scrub_leaves_ordinary_numbers_alone(text):
    assert scrub_text(text) == (text, {})


def _packets(shared_data: Path) -> list[dict]:
    path = shared_data / "alpsbench" / "sessions.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _all_text(folder: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    )


def _assert_no_contact_details(model, out: Path) -> None:
    prompts = "\n".join(c for call in model.calls for _, c in call.messages)
    files = _all_text(out)
    for detail in CONTACT_DETAILS:
        assert detail not in prompts, f"{detail!r} reached a prompt"
        assert detail not in files, f"{detail!r} reached an exported file"


@pytest.mark.shared
async def test_contact_details_of_the_three_packets_reach_no_prompt_or_export(
    tmp_path, shared_data
):
    lines = [p for p in _packets(shared_data) if p["session_id"] in CONTACT_PACKETS]
    source = tmp_path / "three.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in lines), encoding="utf-8")
    raw = "".join(json.dumps(p) for p in lines)
    assert all(d in raw for d in CONTACT_DETAILS)  # they are really there

    model = scripted_builder()
    out = tmp_path / "out"
    report = await build_dataset(f"alpsbench-packets:{source}", out, model, show_progress=False)
    assert report.stages["filter"].ok == 3 and report.accepted == 9  # all three were built
    _assert_no_contact_details(model, out)
    assert report.scrubbed["email"] >= 3 and report.scrubbed["phone"] >= 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["privacy"]["scrubbed"] == report.scrubbed
    # no evidence text and no dialogue in the dataset folder by default
    example = read_jsonl(out / "examples.jsonl", Example)[0]
    assert example.memories and all(e.text == "" for m in example.memories for e in m.evidence)
    assert all(
        not json.loads(line)["sessions"] for line in (out / "users.jsonl").read_text().splitlines()
    )


SPANISH_TURNS = [
    (
        "Hola, trabajo como cuidadora en una empresa de atención a domicilio desde que me mudé "
        "al Reino Unido. Mis jefes compiten conmigo y me siento muy sola en el trabajo."
    ),
    (
        "¿Me ayudas a escribir una carta a recursos humanos? Firma así:\nLucía Martínez\n"
        "lucia.martinez@correo.es\n+34 612 345 678"
    ),
    "Gracias. Me cuesta mucho dormir pensando en todo esto, echo de menos a mi familia.",
]
CHINESE_TURNS = [
    "你好，请帮我修改一下我的简历，我想找一份幼儿园老师的工作。",
    (
        "Hello\nI'm Gou Lingqiao\nWanfeng Second Village, Wulidian Street\nChongqing,  China\n"
        "18302378068\nSkills: 3 years of customer service on the phone."
    ),
    "我因为丈夫在厦门找到了工作，所以辞掉了原来的工作，现在很焦虑，不知道能不能找到合适的岗位。",
    "我以前在一个帮助自闭症儿童的机构做志愿者，这段经历对我很重要。",
]


def _rewrite(packet: dict, turns: list[str]) -> dict:
    dialogue = []
    for text in turns:
        dialogue += [{"role": "user", "text": text}, {"role": "assistant", "text": "OK."}]
    out = dict(packet)
    out["dialogue"] = dialogue
    return out


@pytest.mark.shared
async def test_sixty_packets_build_zh_and_es_users_in_their_language(tmp_path, shared_data):
    packets = _packets(shared_data)
    variants = {"sess_04e2539a63ae": SPANISH_TURNS, "sess_088e73a8342a": CHINESE_TURNS}
    packets = [
        _rewrite(p, variants[p["session_id"]]) if p["session_id"] in variants else p
        for p in packets
    ]
    source = tmp_path / "sixty.jsonl"
    source.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in packets), encoding="utf-8"
    )

    model = scripted_builder(name="scripted-multilingual")
    out = tmp_path / "out"
    report = await build_dataset(
        f"alpsbench-packets:{source}",
        out,
        model,
        BuildConfig(split_by_language=True),
        show_progress=False,
        concurrency=8,
    )
    users = {u.user_id: u for u in load_users(f"alpsbench-packets:{source}")}
    assert users["sess_04e2539a63ae"].language == "es"
    assert users["sess_088e73a8342a"].language == "zh"
    assert report.stages["filter"].ok == 38

    examples = read_jsonl(out / "examples.jsonl", Example)
    by_user: dict[str, list[Example]] = {}
    for e in examples:
        by_user.setdefault(e.user_id, []).append(e)
    for user, lang in (("sess_04e2539a63ae", "es"), ("sess_088e73a8342a", "zh")):
        assert len(by_user[user]) == 3
        for e in by_user[user]:
            assert e.language == lang and detect_text_language(e.query)[0] == lang
            assert e.meta["inspection_language"] == lang
        asked = [
            c
            for c in model.calls
            if c.json_schema["title"] == "queries"
            and f"[{e.memories[0].memory_id}]" in c.messages[-1][1]
            and ("Spanish (es)" in c.messages[-1][1] or "Chinese (zh)" in c.messages[-1][1])
        ]
        assert asked
    assert report.languages["zh"] == 3 and report.languages["es"] == 3
    assert {"examples.zh.jsonl", "examples.es.jsonl", "examples.en.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    zh = read_jsonl(out / "examples.zh.jsonl", Example)
    assert [e.user_id for e in zh] == ["sess_088e73a8342a"] * 3

    _assert_no_contact_details(model, out)
    for detail in ("lucia.martinez@correo.es", "612 345 678"):
        assert detail not in _all_text(out)
        assert all(detail not in c for call in model.calls for _, c in call.messages)


def _corpus() -> list[dict]:
    path = Path(__file__).parent / "fixtures" / "scrub_corpus.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("row", _corpus(), ids=lambda r: r["text"][:40])
def test_scrub_corpus_every_format(row):
    """Phones of several regions, cards, IBANs, URLs without a scheme, European
    addresses (finding 6), and what must stay."""
    out, counts = scrub_text(row["text"], region=row["region"])
    if row["scrubbed"] is None:
        assert (out, counts) == (row["text"], {})
    else:
        assert out == row["scrubbed"]
        assert counts[row["kind"]] >= 1


def test_a_card_or_iban_that_fails_its_checksum_is_not_called_one():
    assert scrub_text("card 4111 1111 1111 1112 declined")[0] == "card 4111 1111 1111 1112 declined"
    assert scrub_text("code GB82 WEST 1234 5698 7654 33 wrong")[1].get("id_number") is None


def test_url_detection_reads_its_packaged_tld_list_and_fetches_nothing(monkeypatch, tmp_path):
    import urllib.request

    from urlextract import cachefile

    from attunement.building import privacy

    def no_network(*args, **kwargs):
        raise AssertionError("the TLD list must not be fetched")

    stale = tmp_path / "user-cache"
    stale.mkdir()
    (stale / "tlds-alpha-by-domain.txt").write_text("# a list someone updated\nZZZ\n")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(cachefile, "user_cache_dir", lambda name: str(stale))
    # as for a user who cannot write into site-packages: urlextract would then read
    # (and update) a list in the user's cache folder
    package_data = str(Path(cachefile.__file__).parent / "data")
    access = cachefile.os.access
    monkeypatch.setattr(
        cachefile.os,
        "access",
        lambda path, mode: (
            False if str(path).startswith(package_data) and mode == os.W_OK else access(path, mode)
        ),
    )
    privacy._url_extractor.cache_clear()
    try:
        assert scrub_text("see github.com/user/repo")[0] == "see [URL]"
        assert scrub_text("see shop.zzz/item/1")[0] == "see shop.zzz/item/1"  # not a TLD
    finally:
        privacy._url_extractor.cache_clear()


async def test_a_build_writes_its_scrub_report(tmp_path):
    rows = [json.loads(x) for x in EXAMPLE_USERS.read_text().splitlines() if x.strip()][:1]
    rows[0]["sessions"][0]["turns"][0]["text"] += (
        " Call 555-0142 or mail maren@example.org; code at github.com/maren/notes."
    )
    source = tmp_path / "u.jsonl"
    source.write_text(json.dumps(rows[0]) + "\n")
    model = scripted_builder()
    await build_dataset(f"users:{source}", tmp_path / "out", model, show_progress=False)
    report = json.loads((tmp_path / "out" / "scrub_report.json").read_text())
    assert report["kinds"] == {"email": 1, "url": 1, "address": 0, "phone": 1, "id_number": 0}
    assert report["users_scrubbed"] == 1 and report["per_user"]["demo-maren"]["phone"] == 1
    prompts = "\n".join(c for call in model.calls for _, c in call.messages)
    assert "555-0142" not in prompts and "github.com/maren" not in prompts
