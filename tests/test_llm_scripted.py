"""The scripted test model and the base interface's validation and accounting."""

from __future__ import annotations

import asyncio

import pytest

from attunement.llm import LLMResponseError, ScriptedChatModel, Step, make_request
from attunement.llm.base import ChatModel, ChatRequest, Completion

MSG = [{"role": "user", "content": "Resonation please"}]


async def test_rules_outputs_and_responder():
    rules = ScriptedChatModel(rules=[("Resonation", "Score: 4")], default="Score: 1")
    assert (await rules.complete(MSG))[0].text == "Score: 4"
    assert (await rules.complete([{"role": "user", "content": "x"}]))[0].text == "Score: 1"
    listed = ScriptedChatModel(outputs=["a", "b"])
    assert [c.text for c in await listed.complete(MSG, n=2)] == ["a", "b"]
    with pytest.raises(AssertionError, match="ran out"):
        await listed.complete(MSG)
    fn = ScriptedChatModel(lambda req, i: f"#{i}")
    assert [c.text for c in await fn.complete(MSG, n=2, sample_start=5)] == ["#5", "#6"]


async def test_injected_errors_and_delays():
    model = ScriptedChatModel(
        outputs=[Step("slow", delay=0.02, completion_tokens=7), TimeoutError("injected")]
    )
    [c] = await model.complete(MSG)
    assert (c.text, c.completion_tokens) == ("slow", 7)
    with pytest.raises(TimeoutError, match="injected"):
        await model.complete(MSG)


async def test_peak_in_flight_is_measured():
    model = ScriptedChatModel(lambda r, i: "ok", delay=0.01)
    await asyncio.gather(*(model.complete(MSG) for _ in range(5)))
    assert model.peak_in_flight == 5 and len(model.calls) == 5


def test_exactly_one_answer_source():
    with pytest.raises(ValueError, match="exactly one"):
        ScriptedChatModel()
    with pytest.raises(ValueError, match="exactly one"):
        ScriptedChatModel(lambda r, i: "x", outputs=["y"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3.0}, "temperature"),
        ({"sample_start": -1}, "sample_start"),
    ],
)
def test_request_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_request(MSG, **kwargs)


def test_message_validation():
    with pytest.raises(ValueError, match="empty"):
        make_request([])
    with pytest.raises(ValueError, match="role"):
        make_request([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="string"):
        make_request([{"role": "user", "content": None}])


def test_sample_seeds_differ_and_repeat():
    req = make_request(MSG, seed=3)
    assert req.sample_seed(0) != req.sample_seed(1)
    assert req.sample_seed(1) == make_request(MSG, seed=3).sample_seed(1)
    assert make_request(MSG, seed=4).sample_seed(0) != req.sample_seed(0)


async def test_prompt_billed_once_per_request():
    model = ScriptedChatModel(lambda r, i: "one two")
    out = await model.complete(MSG, n=3)
    usage = model.usage.snapshot()
    assert usage.calls == 1
    assert usage.prompt_tokens == out[0].prompt_tokens
    assert usage.completion_tokens == 3 * 2


async def test_backend_returning_wrong_count_is_an_error():
    class Short(ChatModel):
        name = "short"

        async def _complete(self, request: ChatRequest) -> list[Completion]:
            return [Completion(text="only one")]

    with pytest.raises(LLMResponseError, match="asked for 2"):
        await Short().complete(MSG, n=2)
