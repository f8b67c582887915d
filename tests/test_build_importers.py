"""Importers: AlpsBench packets and records, chat logs, our own users; bad input."""

from __future__ import annotations

import json

import pytest

from attunement.building.importers import ImportOptions, load_users, parse_source
from attunement.jsonl import RecordError
from attunement.records import UserHistory


def test_parse_source_rejects_unknown_kind():
    assert parse_source("chatlog:/x.jsonl")[0] == "chatlog"
    with pytest.raises(ValueError, match="KIND:PATH"):
        parse_source("csv:/x.csv")
    with pytest.raises(ValueError, match="KIND:PATH"):
        parse_source("/just/a/path.jsonl")


def test_packets_map_dialogue_and_memories(fixtures_dir):
    users = load_users(f"alpsbench-packets:{fixtures_dir / 'build_packets.jsonl'}")
    assert [u.user_id for u in users] == ["sess_fx_deep", "sess_fx_shallow", "sess_fx_tagged"]
    deep = users[0]
    assert deep.meta["annotated"] is True
    assert [t.role for t in deep.sessions[0].turns] == ["user", "assistant", "user"]
    m1 = deep.memories[0]
    assert m1.label == "Social_Relationships/Family" and m1.emotion == "sadness"
    assert m1.evidence[0].utterance_index == 0
    assert m1.evidence[0].text in deep.sessions[0].turns[0].text


def test_error_tagged_memories_dropped_stripped_or_kept(fixtures_dir):
    path = fixtures_dir / "build_packets.jsonl"
    dropped = load_users(f"alpsbench-packets:{path}")[2]
    assert [m.memory_id for m in dropped.memories] == ["m2", "m3", "m4"]
    assert dropped.meta["dropped_memories"][0]["memory_id"] == "m1"
    assert "Not about the user" in dropped.meta["dropped_memories"][0]["reason"]

    stripped = load_users(f"alpsbench-packets:{path}", ImportOptions(error_tags="strip"))[2]
    assert stripped.memories[0].value == "Feels ashamed and angry about losing a job"

    kept = load_users(f"alpsbench-packets:{path}", ImportOptions(error_tags="keep"))[2]
    assert "[ERROR:" in kept.memories[0].value


def test_alpsbench_records_order_turns_and_read_intents(fixtures_dir):
    users = load_users(f"alpsbench:{fixtures_dir / 'build_alpsbench_records.jsonl'}")
    anna = users[0]
    assert anna.user_id == "u-anna"
    assert anna.sessions[0].turns[0].text.startswith("My best friend")  # sorted by utterance_index
    assert anna.intents[0] == "Personal Advice / Relationship Guidance"
    assert {m.memory_id for m in anna.memories} == {"g1", "g2", "g3"}
    assert anna.memories[0].evidence[0].session_id == "a1"


def test_chatlog_merges_conversations_of_one_user(fixtures_dir):
    users = load_users(f"chatlog:{fixtures_dir / 'build_chatlog.jsonl'}")
    assert [u.user_id for u in users] == ["c-lena", "c-omar"]
    lena = users[0]
    assert [s.session_id for s in lena.sessions] == ["c-lena#s1", "lena-2"]
    assert lena.memories == [] and not lena.meta.get("annotated")
    assert users[1].sessions[0].turns[0].role == "system"


def test_users_source_round_trips(tmp_path, fixtures_dir):
    users = load_users(f"alpsbench:{fixtures_dir / 'build_alpsbench_records.jsonl'}")
    p = tmp_path / "users.jsonl"
    p.write_text("".join(u.model_dump_json() + "\n" for u in users))
    again = load_users(f"users:{p}")
    assert again == users


def test_bundled_example_users_are_valid():
    from importlib import resources

    path = resources.files("attunement").joinpath("data/example_users.jsonl")
    users = load_users(f"users:{path}")
    assert len(users) == 6
    for u in users:
        assert 3 <= len(u.memories) <= 8
        for m in u.memories:  # every evidence quote occurs in the turn it points to
            ev = m.evidence[0]
            session = next(s for s in u.sessions if s.session_id == ev.session_id)
            turn = session.turns[ev.utterance_index]
            assert turn.role == "user" and ev.text in turn.text


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (
            '{"session_id": "s", "dialogue": [], "task1": {}}',
            "task1.ground_truth_memories",
            "field required",
        ),
        (
            (
                '{"session_id": "s", "dialogue": [{"role": "robot", "text": "x"}], '
                '"task1": {"ground_truth_memories": []}}'
            ),
            "dialogue[0].role",
            "unknown role",
        ),
        (
            (
                '{"session_id": "s", "dialogue": [], "task1": {"ground_truth_memories": '
                '[{"memory_id": "m1", "label": "States_Experiences/Mental_State"}]}}'
            ),
            "task1.ground_truth_memories[0].value",
            "field required",
        ),
        (
            (
                '{"session_id": "s", "dialogue": [], "task1": {"ground_truth_memories": '
                '[{"memory_id": "m1", "value": "a"}, {"memory_id": "m1", "value": "b"}]}}'
            ),
            "task1.ground_truth_memories[1].memory_id",
            "duplicate",
        ),
        ("[1, 2]", "", "expected a JSON object"),
        ("{not json", "", "not valid JSON"),
    ],
)
def test_malformed_packet_names_file_line_and_field(tmp_path, fixtures_dir, line, field, message):
    good = (fixtures_dir / "build_packets.jsonl").read_text().splitlines()[0]
    p = tmp_path / "packets.jsonl"
    p.write_text(good + "\n" + line + "\n")
    with pytest.raises(RecordError) as info:
        load_users(f"alpsbench-packets:{p}")
    err = info.value
    assert err.path == str(p) and err.line == 2 and err.field == field
    assert message in err.message
    assert str(err).startswith(f"{p}:2: ")


def test_malformed_chatlog_and_records_name_the_field(tmp_path):
    p = tmp_path / "chat.jsonl"
    p.write_text('{"user_id": "u", "messages": [{"role": "user"}]}\n')
    with pytest.raises(RecordError, match=r"chat.jsonl:1: messages\[0\]\.content"):
        load_users(f"chatlog:{p}")
    r = tmp_path / "rec.jsonl"
    r.write_text('{"sessions": []}\n')
    with pytest.raises(RecordError, match=r"rec.jsonl:1: user_id: field required"):
        load_users(f"alpsbench:{r}")


def test_skip_invalid_writes_rejects_file(tmp_path, fixtures_dir):
    lines = (fixtures_dir / "build_packets.jsonl").read_text().splitlines()
    p = tmp_path / "packets.jsonl"
    p.write_text(lines[0] + "\n{broken\n" + lines[1] + "\n")
    rejects = tmp_path / "rejects.jsonl"
    users = load_users(f"alpsbench-packets:{p}", ImportOptions(skip_invalid=True, rejects=rejects))
    assert [u.user_id for u in users] == ["sess_fx_deep", "sess_fx_shallow"]
    bad = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert len(bad) == 1 and bad[0]["line"] == 2 and "not valid JSON" in bad[0]["error"]
    assert bad[0]["raw"] == "{broken"


def test_duplicate_users_are_an_error(tmp_path, fixtures_dir):
    line = (fixtures_dir / "build_packets.jsonl").read_text().splitlines()[0]
    p = tmp_path / "dup.jsonl"
    p.write_text(line + "\n" + line + "\n")
    with pytest.raises(ValueError, match="more than once"):
        load_users(f"alpsbench-packets:{p}")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_users(f"users:{tmp_path / 'nope.jsonl'}")


@pytest.mark.shared
def test_real_alpsbench_packets_import(shared_data):
    users = load_users(f"alpsbench-packets:{shared_data / 'alpsbench' / 'sessions.jsonl'}")
    assert len(users) == 60
    assert all(isinstance(u, UserHistory) and u.sessions for u in users)
    dropped = sum(len(u.meta.get("dropped_memories", [])) for u in users)
    assert dropped > 0  # the annotation noise is recognised...
    assert not any("[ERROR" in m.value for u in users for m in u.memories)  # ...and removed


def test_bom_bad_bytes_and_unused_fields_do_not_lose_users(tmp_path, fixtures_dir):
    good = (fixtures_dir / "build_packets.jsonl").read_text().splitlines()
    packet = json.loads(good[0])
    packet["task1"]["ground_truth_memories"][0]["confidence"] = 1.7
    packet["task1"]["ground_truth_memories"][0]["type"] = "inferred"
    packet["dialogue"][0]["text"] += " caf\udce9"  # a Latin-1 byte in a UTF-8 file
    raw = ("\ufeff" + json.dumps(packet)).encode("utf-8", "surrogateescape")
    raw = raw.replace(b"caf\\udce9", b"caf\xe9")
    p = tmp_path / "packets.jsonl"
    p.write_bytes(raw + b"\n" + good[1].encode() + b"\n")
    users = load_users(f"alpsbench-packets:{p}")
    assert [u.user_id for u in users] == ["sess_fx_deep", "sess_fx_shallow"]
    first = users[0]
    assert first.memories[0].confidence is None and first.memories[0].type is None
    fields = [w["field"] for w in first.meta["import_warnings"]]
    assert "task1.ground_truth_memories[0].confidence" in fields
    assert "task1.ground_truth_memories[0].type" in fields
    assert any("not UTF-8" in w["message"] for w in first.meta["import_warnings"])
    assert first.sessions[0].turns[0].text.endswith("caf\ufffd")
    assert "import_warnings" not in users[1].meta


def test_null_utterance_index_is_ordered_by_position(tmp_path):
    record = {
        "user_id": "u1",
        "sessions": [
            {
                "session_id": "s1",
                "turns": [
                    {"utterance_index": None, "role": "user", "text": "first"},
                    {"utterance_index": None, "role": "assistant", "text": "second"},
                    {"role": "user", "text": "third"},
                ],
            }
        ],
        "memory_items": [
            {
                "memory_id": "g1",
                "value": "Misses her sister",
                "label": "Social_Relationships/Family",
                "evidence": {"session_id": "s1", "utterance_index": None, "text": "first"},
            }
        ],
    }
    p = tmp_path / "records.jsonl"
    p.write_text(json.dumps(record) + "\n")
    [user] = load_users(f"alpsbench:{p}")
    assert [t.text for t in user.sessions[0].turns] == ["first", "second", "third"]
    assert user.memories[0].evidence[0].utterance_index is None


def test_a_bom_on_our_own_users_file(tmp_path, fixtures_dir):
    users = load_users(f"alpsbench:{fixtures_dir / 'build_alpsbench_records.jsonl'}")
    p = tmp_path / "users.jsonl"
    p.write_text("\ufeff" + "".join(u.model_dump_json() + "\n" for u in users), encoding="utf-8")
    assert [u.user_id for u in load_users(f"users:{p}")] == [u.user_id for u in users]
