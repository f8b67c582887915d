"""End to end on real AlpsBench packets with the embedded model (slow)."""

from __future__ import annotations

import pytest

from attunement.building import BuildConfig, build_dataset, load_stage_records, load_users
from attunement.jsonl import read_jsonl
from attunement.records import Category, Example, Query

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _filled(example: Example) -> None:
    assert example.query.strip() and example.user_id and example.category
    s = example.situation
    assert s is not None and s.description.strip() and s.relevant_memory_ids
    p = example.persona
    assert p is not None and p.profile.strip() and p.is_deep and p.gate_reason
    assert p.big_five is not None and len(p.big_five.justifications) == 5
    assert example.memories and example.language
    assert example.meta["source"] and example.meta["relevant_memory_ids"]


async def test_builder_on_real_packets_with_the_embedded_model(tmp_path, shared_data, local_model):
    users = load_users(f"alpsbench-packets:{shared_data / 'alpsbench' / 'sessions.jsonl'}")
    # two users with personal memories (the first 40 packets have them); one category
    # keeps the run to ten short calls
    chosen = [users[4], users[36]]
    config = BuildConfig(categories=[Category.ES], user_text_chars=400)
    report = await build_dataset(
        chosen, tmp_path, local_model, config, seed=0, concurrency=1, show_progress=False
    )

    assert report.stages["filter"].ok == 2
    # every stage finished every key it was given: ok or rejected with a reason
    for stage in ("persona", "bigfive", "situations", "queries", "inspect"):
        count = report.stages[stage]
        assert count.ok + count.rejected == count.input and count.pending == 0, stage
        for rec in load_stage_records(tmp_path, stage):
            assert rec.status == "ok" or (rec.reason_code and rec.reason), rec
    queries = [
        Query.model_validate(r.output)
        for r in load_stage_records(tmp_path, "queries")
        if r.status == "ok"
    ]
    assert queries, "the embedded model produced no valid query at all"
    for q in queries:
        assert q.text.strip() and q.situation.description and q.relevant_memory_ids
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert len(examples) == report.accepted
    for e in examples:
        _filled(e)
