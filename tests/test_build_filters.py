"""The depth filter: label prefixes, keywords, emotion, intents, editable rules."""

from __future__ import annotations

import json

import pytest

from attunement.building.filters import FilterRules, filter_user
from attunement.building.importers import load_users
from attunement.records import MemoryItem, UserHistory


def _user(*memories: MemoryItem, intents: list[str] | None = None) -> UserHistory:
    return UserHistory(user_id="u", memories=list(memories), intents=intents or [])


def _m(mid: str, value: str, label: str | None = None, **kw) -> MemoryItem:
    return MemoryItem(memory_id=mid, value=value, label=label, **kw)


def test_label_prefixes_and_keywords_make_memories_deep():
    rules = FilterRules()
    assert (
        rules.why_deep(_m("a", "x", "Social_Relationships/Friends"))
        == "label Social_Relationships/Friends"
    )
    assert rules.why_deep(_m("b", "Likes jazz", "Preferences/Music")) is None
    unmapped = _m("c", "Worried about exams", "UNMAPPED", label_suggestion="School/Pressure")
    assert rules.why_deep(unmapped) == "keyword 'worried'"
    assert rules.why_deep(_m("d", "Uses Python 3", "UNMAPPED")) is None
    # keywords apply to unlabelled items only, but an annotated emotion always counts
    assert rules.why_deep(_m("e", "Worried about exams", "Preferences/Education")) is None
    assert (
        rules.why_deep(_m("f", "Got a new bike", "Possessions/Important_Items", emotion="joy"))
        == "emotion 'joy'"
    )


def test_keyword_matching_respects_word_boundaries():
    rules = FilterRules(keywords=["friend", "anxi*", "passed away"])
    assert rules.why_deep(_m("a", "Has three friends")) == "keyword 'friends'"
    assert rules.why_deep(_m("b", "Requires liver-friendly meals")) is None
    assert rules.why_deep(_m("c", "Anxiety before meetings")) == "keyword 'anxiety'"
    assert rules.why_deep(_m("d", "Her cat passed away")) == "keyword 'passed away'"
    assert (
        rules.why_deep(_m("e", "Label", label_suggestion="Social/Friend_Group"))
        == "keyword 'friend'"
    )


def test_min_deep_memories_and_reasons():
    rules = FilterRules(min_deep_memories=2)
    one = _user(_m("m1", "x", "Social_Relationships/Family"), _m("m2", "y", "Preferences/Food"))
    d = filter_user(one, rules)
    assert not d.keep and d.reason_code == "filter.shallow_memories"
    assert "1 of 2" in d.reason and "m1 (label Social_Relationships/Family)" in d.reason
    two = _user(
        _m("m1", "x", "Social_Relationships/Family"),
        _m("m2", "y", "States_Experiences/Mental_State"),
    )
    d = filter_user(two, rules)
    assert d.keep and d.deep_memory_ids == ["m1", "m2"]
    assert filter_user(_user(), rules).reason_code == "filter.no_memories"


def test_intents_must_match_when_present():
    deep = (
        _m("m1", "x", "Social_Relationships/Family"),
        _m("m2", "y", "States_Experiences/Mental_State"),
    )
    rules = FilterRules()
    assert filter_user(_user(*deep), rules).keep  # no intents: not required
    assert filter_user(_user(*deep, intents=["Personal Advice / Relationship"]), rules).keep
    d = filter_user(_user(*deep, intents=["Informational Intent / Fact Lookup"]), rules)
    assert not d.keep and d.reason_code == "filter.intents" and "Fact Lookup" in d.reason
    relaxed = FilterRules(require_intent_match=False)
    assert filter_user(_user(*deep, intents=["Informational Intent"]), relaxed).keep


def test_rules_file_overrides_defaults(tmp_path):
    p = tmp_path / "rules.json"
    p.write_text(json.dumps({"min_deep_memories": 1, "deep_label_prefixes": ["Preferences/"]}))
    rules = FilterRules.from_file(p)
    assert rules.min_deep_memories == 1 and rules.deep_label_prefixes == ["Preferences/"]
    assert rules.keywords == FilterRules().keywords  # untouched fields keep defaults
    assert rules.version != FilterRules().version
    p.write_text(json.dumps({"min_deep_memorie": 1}))
    with pytest.raises(ValueError, match="rules.json: invalid filter rules"):
        FilterRules.from_file(p)


def test_records_fixture_intents_filter(fixtures_dir):
    users = load_users(f"alpsbench:{fixtures_dir / 'build_alpsbench_records.jsonl'}")
    decisions = {u.user_id: filter_user(u, FilterRules()) for u in users}
    assert decisions["u-anna"].keep
    assert decisions["u-ben"].reason_code == "filter.intents"  # deep memories, factual intents


@pytest.mark.shared
def test_real_packets_shallow_users_are_all_rejected(shared_data):
    """The shared data holds 40 users with personal memories, then 20 without."""
    users = load_users(f"alpsbench-packets:{shared_data / 'alpsbench' / 'sessions.jsonl'}")
    keep = [filter_user(u, FilterRules()).keep for u in users]
    assert not any(keep[40:])  # every shallow user is rejected
    assert sum(keep[:40]) >= 35  # and nearly all personal ones kept


def test_authors_preset_follows_their_filter_script():
    rules = FilterRules.preset("authors")
    # one deep memory is enough, Possessions labels count, emotion does not
    assert filter_user(_user(_m("a", "Owns a guitar", "Possessions/Important_Items")), rules).keep
    assert rules.why_deep(_m("b", "Likes jazz", "Preferences/Music", emotion="joy")) is None
    # family background and goals are not among their prefixes
    assert rules.why_deep(_m("c", "Has two sisters", "Personal_Background/Family")) is None
    # UNMAPPED items: plain substring of the label suggestion only ("care" in "career")
    career = _m("d", "Wants a new job", "UNMAPPED", label_suggestion="Career/Switch")
    assert rules.why_deep(career) == "keyword 'care'"
    assert rules.why_deep(_m("e", "Feels stress", "UNMAPPED", label_suggestion="Tech")) is None
    assert FilterRules().why_deep(career) is None  # whole words in the default rules
    # their intent allowlist
    learner = _user(
        _m("f", "x", "States_Experiences/Mental_State"),
        intents=["Learning Support / Homework Help"],
    )
    assert filter_user(learner, rules).keep and not filter_user(learner, FilterRules()).keep
    assert FilterRules.load("authors") == rules
    with pytest.raises(ValueError, match="unknown filter preset"):
        FilterRules.preset("paper")


@pytest.mark.shared
def test_presets_on_the_shared_packets(shared_data):
    from attunement.building import ImportOptions

    path = f"alpsbench-packets:{shared_data / 'alpsbench' / 'sessions.jsonl'}"
    users = load_users(path)
    kept = {
        name: sum(filter_user(u, FilterRules.preset(name)).keep for u in users)
        for name in ("default", "authors")
    }
    assert kept == {"default": 38, "authors": 45}
    # the authors' script also sees the items annotators tagged [ERROR]: it keeps 46
    tagged = load_users(path, ImportOptions(error_tags="keep"))
    assert sum(filter_user(u, FilterRules.preset("authors")).keep for u in tagged) == 46


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1, 2]", "{what} must be a JSON object"),
        ("{oops", "not valid JSON"),
        ('{"nope": 1}', "invalid {what}"),
    ],
)
def test_rules_and_build_config_files_are_read_the_same_way(tmp_path, text, problem):
    from attunement.building import BuildConfig

    p = tmp_path / "settings.json"
    p.write_text(text)
    for model, what in ((FilterRules, "filter rules"), (BuildConfig, "build config")):
        with pytest.raises(ValueError, match="settings.json: " + problem.format(what=what)):
            model.from_file(p)
