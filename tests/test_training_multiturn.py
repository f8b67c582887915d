"""Multi-turn GRPO's rollout on TRL, without a trainer: a tiny byte-level tokenizer with
a ChatML template, a fake sampler that records what it was shown, a scripted simulator.

What must hold: each reply is sampled from exactly the sequence the trainer learns
from (prompt, replies, the user's turns between them); the user's turns are masked
out (0) and the policy's tokens in (1); the whole sequence is the chat template's
rendering of the talk; the reward is the talk's (final emotion / 100, mixed with
the per-turn judge reward when asked); a talk whose simulator fails has no reward.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import dialogue_scripted as ds
import pytest
from tiny_tokenizer import chatml_tokenizer

from attunement.llm import LLMConnectionError, ScriptedChatModel
from attunement.policy import GenerationSettings
from attunement.training.config import MultiTurnSettings
from attunement.training.multiturn import (
    DialogueReward,
    MultiTurnRollout,
    TokenTalk,
    between_turns,
    prompt_key,
)

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer():
    return chatml_tokenizer()


class Sampler:
    """Replies ``# Analysis / # Response Reply k`` (ending with the end-of-turn token)
    and remembers every sequence it was asked to continue."""

    def __init__(self, tokenizer, *, eos: bool = True):
        self.tokenizer = tokenizer
        self.seen: list[list[int]] = []
        self.eos = eos

    def __call__(self, ids: list[int]) -> list[int]:
        self.seen.append(list(ids))
        starts = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        k = (ids.count(starts) - 1) // 2  # the reply's number in its talk
        reply = self.tokenizer.encode(
            f"# Analysis\nthinking {k}\n# Response\nReply {k}", add_special_tokens=False
        )
        return reply + ([self.tokenizer.eos_token_id] if self.eos else [])


def simulator(change: int = 5, *, fail: bool = False) -> ScriptedChatModel:
    def answer(request, index):
        if fail:
            raise LLMConnectionError("simulator down")
        step = ds.step_of(request)
        if step == "assess":
            return ds.assessment(f"{change:+d}")
        return f"Plan: go on\nMessage: user message {index}"

    return ScriptedChatModel(answer, name="sim")


def row(uid: str) -> dict:
    ex = ds.example(uid)
    prompt = [
        {"role": "system", "content": "You are a caring assistant."},
        {"role": "user", "content": ex.query},
    ]
    return {"prompt": prompt, "example_id": uid}  # ids only, as training rows are


def rollout(tokenizer, sampler, sim, *, max_turns=3, turn_weight=0.0, judge=None):
    rows = [row("u1"), row("u2")]
    r = MultiTurnRollout(
        rows,
        MultiTurnSettings(simulator="unused", max_turns=max_turns, turn_weight=turn_weight),
        GenerationSettings(memory_mode="full", max_tokens=16),
        tokenizer,
        num_generations=2,
        simulator_model=sim,
        abort_after=2,
        examples=[ds.example("u1"), ds.example("u2")],
    )
    r.make_generate = lambda trainer: sampler
    if judge is not None:
        r._judge = judge
    return r, rows


def trainer(step: int = 0):
    return SimpleNamespace(state=SimpleNamespace(global_step=step))


def test_each_reply_is_sampled_from_the_sequence_trained_on(tokenizer):
    sampler = Sampler(tokenizer)
    r, rows = rollout(tokenizer, sampler, simulator(5))
    prompts = [rows[0]["prompt"], rows[0]["prompt"], rows[1]["prompt"], rows[1]["prompt"]]
    try:
        out = r(prompts, trainer())
    finally:
        r.close()
    assert out["logprobs"] is None and len(out["completion_ids"]) == 4
    # 3 user turns, every reply assessed (+5 each): 40 -> 55
    assert out["dialogue_reward"] == [0.55] * 4
    for prompt_ids, completion, mask in zip(
        out["prompt_ids"], out["completion_ids"], out["env_mask"], strict=True
    ):
        assert len(mask) == len(completion)
        ids = prompt_ids + completion
        # every sampling call saw a prefix of the final sequence, ending where a reply starts
        calls = {tuple(c) for c in sampler.seen if ids[: len(c)] == c}
        assert len(calls) == 3
        for c in sorted(calls, key=len)[1:]:
            assert mask[len(c) - len(prompt_ids) - 1] == 0  # the user's turn just before
        # the policy's tokens are in the loss, the user's are not
        decoded_in = tokenizer.decode([t for t, m in zip(completion, mask) if m])
        decoded_out = tokenizer.decode([t for t, m in zip(completion, mask) if not m])
        assert "Reply 1" in decoded_in and "user message" not in decoded_in
        assert "user message" in decoded_out and "Reply" not in decoded_out
        assert completion[-1] == tokenizer.eos_token_id and mask[-1] == 1


def test_the_sequence_is_the_templates_rendering_of_the_talk(tokenizer):
    talk = TokenTalk(tokenizer, Sampler(tokenizer), name="p")
    import asyncio

    first = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"}]
    [one] = asyncio.run(talk.complete(first))
    second = [*first, {"role": "assistant", "content": one.text}, {"role": "user", "content": "ok"}]
    [two] = asyncio.run(talk.complete(second))
    whole = [*second, {"role": "assistant", "content": two.text}]
    rendered = tokenizer.apply_chat_template(whole, tokenize=False)
    assert tokenizer.decode(talk.ids) == rendered.removesuffix("\n")
    # a reply cut at max_tokens (no end-of-turn token): the closing token is the user's side
    cut = TokenTalk(tokenizer, Sampler(tokenizer, eos=False), name="p")
    [one] = asyncio.run(cut.complete(first))
    second = [*first, {"role": "assistant", "content": one.text}, {"role": "user", "content": "ok"}]
    asyncio.run(cut.complete(second))
    eos_at = cut.ids.index(tokenizer.eos_token_id, cut.prompt_length)
    assert cut.mask[eos_at - cut.prompt_length] == 0


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer):
    before = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    after = [*before, {"role": "user", "content": "c"}]
    original = tokenizer.chat_template
    tokenizer.chat_template = (
        "{% for m in messages[-2:] %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    try:
        with pytest.raises(ValueError, match="rewrites earlier turns"):
            between_turns(tokenizer, before, after, eos_done=False)
    finally:
        tokenizer.chat_template = original


def test_a_failing_simulator_gives_no_reward_and_stops_training(tokenizer):
    r, rows = rollout(tokenizer, Sampler(tokenizer), simulator(fail=True))
    prompts = [rows[0]["prompt"]] * 2
    try:
        out = r(prompts, trainer())
        assert out["dialogue_reward"] == [None, None]
        assert all(len(c) > 0 for c in out["completion_ids"])  # the replies sampled so far
        reward = DialogueReward(r)
        logged = {}
        values = reward(prompts, ["x", "x"], dialogue_reward=out["dialogue_reward"],
                        log_metric=logged.__setitem__)  # fmt: skip
        assert values == [None, None] and logged["rewards/dialogue/failed_frac"] == 1.0
        with pytest.raises(RuntimeError, match="no talk of the last 2 batches"):
            r(prompts, trainer(1))
    finally:
        r.close()


def test_turn_rewards_mix_in_by_the_documented_formula(tokenizer):
    from attunement.records import RewardBreakdown

    class Judge:
        async def score(self, example, replies, criteria_round=0):
            return [
                RewardBreakdown(
                    example_id=r.example_id, reply_id=r.reply_id, reward_model="j", reward=0.25
                )
                for r in replies
            ]

        def check_examples(self, examples):
            pass

    r, rows = rollout(
        tokenizer, Sampler(tokenizer), simulator(10), max_turns=2, turn_weight=0.25, judge=Judge()
    )
    try:
        out = r([rows[1]["prompt"]], trainer())
    finally:
        r.close()
    # e = 40 + 10 + 10 = 60: r = 0.75 * 0.6 + 0.25 * 0.25
    assert out["dialogue_reward"] == [pytest.approx(0.5125)]


def test_prompts_are_found_again_by_key():
    p = [{"role": "user", "content": "x"}]
    assert json.loads(prompt_key(p)) == [["user", "x"]]
