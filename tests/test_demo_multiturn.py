"""``attune demo --multi-turn``: one short simulated talk joins the demo's report."""

from __future__ import annotations

import json

import dialogue_scripted as ds
from test_demo import scripted_everything

from attunement.demo import DEMO_TURNS, run_demo
from attunement.dialogue import read_dialogues
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest


def with_simulator(inner: ScriptedChatModel) -> ScriptedChatModel:
    """The scripted demo model that also plays the simulated user, in JSON as the demo
    asks (a schema on every simulator request)."""

    def respond(request: ChatRequest, index: int) -> str:
        step = ds.step_of(request)
        if step == "assess":
            assert request.json_schema is not None
            return json.dumps(
                {"understood": "kind words", "need_met": "yes", "feeling": "seen", "change": 4}
            )
        if step == "speak":
            assert request.json_schema is not None
            return json.dumps({"plan": "go on", "message": f"it still hurts ({index})"})
        return inner._responder(request, index)

    return ScriptedChatModel(respond, name="scripted-demo")


async def test_demo_multi_turn_adds_one_short_talk_to_the_report(tmp_path):
    model = with_simulator(scripted_everything())
    report = await run_demo(tmp_path, model, max_queries=2, show_progress=False, multi_turn=True)
    [talk] = read_dialogues(tmp_path / "dialogues.jsonl")
    assert sum(t.role == "user" for t in talk.turns) == DEMO_TURNS == 3
    # +4 per assessed reply (the last one too): 40 -> 52
    assert talk.end == "turn_cap" and talk.final_emotion == 52
    assert report.talk == "3 user turns, ended turn_cap, final emotion 52"
    page = report.report.read_text()
    assert 'id="dialogues"' in page and "change +4 -&gt; emotion 44 (B)" in page
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["dialogues"]["rows"][0]["metrics"]["final_emotion"]["mean"] == 52.0
    # the table of the single-turn evaluation is still there
    assert [r["system"] for r in results["table"]] == ["full", "mismatch"]
