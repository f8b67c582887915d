"""Model specs and load_chat_model."""

from __future__ import annotations

import pytest

from attunement.llm import (
    CachedChatModel,
    ChatModel,
    LLMOptions,
    ModelSpec,
    ScriptedChatModel,
    load_chat_model,
    parse_spec,
    register_backend,
)
from attunement.llm.openai_compat import OpenAIChatModel


@pytest.mark.parametrize(
    "text, kind, target, model",
    [
        ("local", "local", "", None),
        ("  LOCAL ", "local", "", None),
        ("local:/models/x.gguf", "local", "/models/x.gguf", None),
        ("openai:http://localhost:8000/v1#qwen", "openai", "http://localhost:8000/v1", "qwen"),
        ("openai:https://api.example.com/v1", "openai", "https://api.example.com/v1", None),
        ("openai:http://h:1/v1#org/model-7b", "openai", "http://h:1/v1", "org/model-7b"),
        ("hf:/ckpt/policy", "hf", "/ckpt/policy", None),
    ],
)
def test_parse_spec(text, kind, target, model):
    spec = parse_spec(text)
    assert spec == ModelSpec(kind=kind, target=target, model=model)
    assert parse_spec(str(spec)) == spec  # round trip


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("gpt4", "unknown model spec"),
        ("openai:localhost:8000#m", "needs a URL"),
    ],
)
def test_parse_spec_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_load_openai_applies_options_and_cache(tmp_path):
    opts = LLMOptions(concurrency=5, timeout=3.0)
    model = load_chat_model("openai:http://localhost:8000/v1#judge", opts)
    assert isinstance(model, OpenAIChatModel)
    assert (model.model, model.max_concurrency, model.name) == (
        "judge",
        5,
        "openai:http://localhost:8000/v1#judge",
    )
    cached = load_chat_model(
        "openai:http://localhost:8000/v1#judge", LLMOptions(cache=tmp_path / "c.db", concurrency=5)
    )
    assert isinstance(cached, CachedChatModel) and cached.max_concurrency == 5
    assert cached.name == model.name


def test_register_backend_adds_a_prefix():
    def factory(spec: ModelSpec, options: LLMOptions) -> ChatModel:
        return ScriptedChatModel(rules=[], default=spec.target, name=f"mine:{spec.target}")

    register_backend("mine", factory)
    model = load_chat_model("mine:house-model")
    assert model.name == "mine:house-model"


def test_options_reject_nonsense():
    with pytest.raises(ValueError):
        LLMOptions(concurrency=0)
    with pytest.raises(ValueError):
        LLMOptions(timeout=0)
    with pytest.raises(ValueError):
        LLMOptions(unknown_option=1)


def test_a_key_variable_must_be_a_variable_name():
    assert LLMOptions(api_key_env="VLLM_API_KEY").api_key_env == "VLLM_API_KEY"
    for bad in ("", "1KEY", "MY-KEY", "KEY NAME"):
        with pytest.raises(ValueError):
            LLMOptions(api_key_env=bad)
    assert parse_spec("openai:http://gpu:8000/v1#m,key=_K2").api_key_env == "_K2"
    assert parse_spec("openai:http://gpu:8000/v1#m,key=2K").model == "m,key=2K"
