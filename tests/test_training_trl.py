"""GRPOReward against TRL's own code paths, without training: completions parsed by a
tokenizer's response template (the thinking arrives as ``reasoning_content``), and the
warning TRL prints for a row whose rewards are all None.

The tokenizer is built here, offline, from nothing: a byte-level BPE trained on a few
words, a Qwen-style chat template and TRL's Qwen3 response schema."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from train_scripted import JSON_JUDGE, examples, install, judged_response, scripted_judge

from attunement.judging import RewardSpec
from attunement.llm import LLMError
from attunement.training.data import TRL_GRPO_LOGGER, build_grpo_rows, redacted_trl_warnings
from attunement.training.reward import GRPOReward

torch = pytest.importorskip("torch")
trl_utils = pytest.importorskip("trl.chat_template_utils")

SPECIAL = ["<|im_start|>", "<|im_end|>"]
THINK_TAGS = ["<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def template_tokenizer():
    """A tiny tokenizer with a chat template and a response template (legacy schema on
    transformers < 5.13, as TRL's ``add_response_schema`` sets it)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["She has felt lonely since the move. That sounds hard."], trainer)
    # the thinking tags are added tokens but not special ones, as in Qwen3's tokenizer:
    # decoding with skip_special_tokens keeps them, so the template can find them
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TAGS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    fast.chat_template = CHAT_TEMPLATE
    if trl_utils._SUPPORTS_RESPONSE_TEMPLATE:
        fast.response_template = trl_utils.qwen3_template
    else:
        fast.response_schema = trl_utils.qwen3_schema
    return fast


def test_thinking_parsed_by_a_response_template_is_the_analysis():
    """TRL decodes a completion with ``parse_response`` when the tokenizer has a response
    template: the thinking goes to ``reasoning_content``, the rest to ``content``. The
    reward reads the thinking as the analysis (PERM's resonation judge reads it)."""
    tokenizer = template_tokenizer()
    text = (
        "<think>\nShe has felt lonely since the move.\n</think>\n\n"
        "That sounds hard. I am here.<|im_end|>"
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    message = trl_utils.parse_response(tokenizer, ids)  # what GRPOTrainer puts in completions
    if "reasoning_content" in message:  # the legacy schema (transformers < 5.13)
        assert message["reasoning_content"] == "She has felt lonely since the move."
        assert "lonely" not in message["content"]
    else:  # the new template, given no chat prefix: the <think> block stays in content
        assert message["content"].startswith("<think>\nShe has felt lonely")

    judge = scripted_judge()
    install(judge)
    exs = examples(1)
    reward = GRPOReward(
        RewardSpec(reward="perm", judge="scripted", overrides=JSON_JUDGE),
        num_generations=2,
        examples=exs,
    )
    seen = []
    reward.on_batch = seen.append

    async def go():
        try:
            return await reward(
                prompts=[[{"role": "user", "content": exs[0].query}]] * 2,
                completions=[[message], [message]],
                completion_ids=[ids, ids],
                example_id=["ex0", "ex0"],
                trainer_state=SimpleNamespace(global_step=0),
            )
        finally:
            await reward.aclose()

    rewards = asyncio.run(go())
    assert all(r is not None for r in rewards)
    analyses = [c.messages[-1][1] for c in judge.calls if "<analysis>" in c.messages[-1][1]]
    assert analyses and all("lonely since the move" in a for a in analyses)
    responses = {judged_response(c) for c in judge.calls} - {None}
    assert responses == {"That sounds hard. I am here."}
    assert seen[0]["format_ok_frac"] == 1.0  # a think block and a response: formatted


def test_a_long_analysis_pays_the_authors_length_penalty():
    """The PERM authors' length rule counts the whole completion (their
    ``length_penalty_reward_func`` over ``completion_ids``): a 2,000-token analysis with
    a 3-token response pays for 1,235 tokens over the 768 allowed."""
    from attunement.training.config import GRPOSettings

    install(scripted_judge())
    settings = GRPOSettings(data="x.jsonl", preset="perm-paper")
    exs = examples(1)
    reward = GRPOReward(
        settings.reward.model_copy(
            update={"judge": "scripted", "overrides": {**settings.reward.overrides, **JSON_JUDGE}}
        ),
        num_generations=2,
        examples=exs,
    )
    analysis = " ".join(["thought"] * 2000)
    completion = [
        {"role": "assistant", "content": f"# Analysis\n{analysis}\n# Response\nI hear you."}
    ]
    got = []
    reward.on_batch = got.append

    async def go():
        try:
            return await reward(
                prompts=[[{"role": "user", "content": "q"}]] * 2,
                completions=[completion, completion],
                completion_ids=[[1] * 2003, [1] * 2003],
                example_id=["ex0", "ex0"],
                trainer_state=SimpleNamespace(global_step=0),
            )
        finally:
            await reward.aclose()

    asyncio.run(go())
    assert got[0]["terms/length_penalty"] == pytest.approx(-(2003 - 768) * 0.001)


def test_perm_counts_the_whole_completion_by_default():
    from attunement.judging import PermConfig

    assert PermConfig().length_on == "completion"


# --------------------------------------------------------------------------- TRL's log


def _trl_self(reward, loop):
    """The parts of a GRPOTrainer that ``_calculate_rewards`` reads."""
    return SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        args=SimpleNamespace(report_to=[]),
        reward_funcs=[reward],
        reward_processing_classes=[None],
        reward_func_names=[reward.__name__],
        state=SimpleNamespace(global_step=0),
        _log_completion_extra=lambda column, values: None,
        _log_metric=lambda name, value: None,
        environments=None,
        async_loop=loop,
    )


def test_trl_logs_no_persona_or_memory_for_rows_the_judge_could_not_score(monkeypatch, caplog):
    """TRL's ``_calculate_rewards`` prints every column, the prompt and the completion of
    a row whose rewards are all None. Rows carry the example's id, and the warning is
    rewritten to the id while the trainer runs, so the log holds no persona or memory."""
    from accelerate import PartialState
    from trl import GRPOTrainer
    from trl.trainer import grpo_trainer
    from trl.trainer.utils import start_event_loop_in_daemon

    PartialState()
    monkeypatch.setattr(grpo_trainer, "gather", lambda tensor: tensor)
    install(scripted_judge(fail=lambda request: LLMError("judge down")))
    exs = examples(1)
    rows, _ = build_grpo_rows(
        exs,
        template_tokenizer(),
        memory="full",
        persona=True,
        situation=True,
        seed=0,
        max_prompt_length=100_000,
    )
    inputs = [rows[0], rows[0]]
    private = [exs[0].persona.profile, exs[0].memories[0].value]
    assert all(p in str(inputs) for p in private)  # the policy's prompt shows them
    reward = GRPOReward(
        RewardSpec(reward="perm", judge="scripted", overrides=JSON_JUDGE),
        num_generations=2,
        examples=exs,
        abort_after=0,
    )
    thread, loop, ready = start_event_loop_in_daemon(name="test-loop")
    ready.wait()
    completion = [{"role": "assistant", "content": "# Analysis\nx\n# Response\nI hear you."}]
    try:
        with caplog.at_level(logging.WARNING, logger=TRL_GRPO_LOGGER), redacted_trl_warnings():
            rewards = GRPOTrainer._calculate_rewards(
                _trl_self(reward, loop),
                inputs,
                [r["prompt"] for r in inputs],
                [completion, completion],
                [[1, 2], [1, 2]],
            )
    finally:
        asyncio.run_coroutine_threadsafe(reward.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    assert torch.isnan(rewards).all()
    logged = [r.getMessage() for r in caplog.records if r.name == TRL_GRPO_LOGGER]
    assert len(logged) == 1 and "example_id 'ex0'" in logged[0]
    assert not any(p in logged[0] for p in private)
    assert "I hear you" not in logged[0]
    # outside the trainer the filter is gone
    assert not logging.getLogger(TRL_GRPO_LOGGER).filters
