"""The verl agent loop of multi-turn training, on verl 0.9.1 itself (CPU, no Ray, no GPU).

The loop is found and built the way verl's agent loop worker does it (the
registry entry from ``agent_loop_config_path``, ``hydra.utils.instantiate``
with verl's keyword arguments), generates through a fake server manager with
verl's ``generate`` signature, and talks with a simulated user on a simulated
server on loopback. The config in docs/scale-out.md is composed with hydra
against verl's packaged trainer config and passes ``validate_config``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("verl")

import asyncio

import dialogue_scripted as ds
from omegaconf import OmegaConf
from tiny_tokenizer import chatml_tokenizer

from attunement.integrations.verl_data import (
    TALK_AGENT,
    export_verl,
    read_verl,
    verl_rows,
)
from attunement.perf.simserver import SimConfig, SimServer
from attunement.perf.simuser import TalkResponder

DOCS = Path(__file__).resolve().parents[1] / "docs" / "scale-out.md"


class FakeServerManager:
    """verl's ``server_manager.generate`` on a script: reply k of a talk is
    ``# Analysis / # Response Reply k`` plus the end-of-turn token, with log-probs."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls: list[dict] = []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids)})
        k = sum(1 for c in self.calls if c["request_id"] == request_id)
        ids = self.tokenizer.encode(
            f"# Analysis\nthinking\n# Response\nReply {k}", add_special_tokens=False
        ) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed")


def trainer_config(response_length: int = 512):
    return OmegaConf.create(
        {
            "actor_rollout_ref": {
                "rollout": {"prompt_length": 512, "response_length": response_length},
            },
            "data": {"apply_chat_template_kwargs": {}},
        }
    )


def build_loop(entry: dict, tokenizer, manager, config):
    """As verl's AgentLoopWorker: the config file's entry into the registry, then
    hydra.utils.instantiate with the worker's keyword arguments."""
    import hydra
    from verl.experimental.agent_loop.agent_loop import (
        DictConfigWrap,
        ToolListWrap,
        _agent_loop_registry,
    )
    from verl.utils.dataset.rl_dataset import RLHFDataset

    import attunement.integrations.verl_agent  # noqa: F401  (registers the loop)

    assert _agent_loop_registry[TALK_AGENT]["_target_"].endswith("verl_agent.TalkAgentLoop")
    _agent_loop_registry[entry["name"]] = OmegaConf.create(entry)
    return hydra.utils.instantiate(
        config=_agent_loop_registry[entry["name"]],
        trainer_config=DictConfigWrap(config=config),
        server_manager=manager,
        tokenizer=tokenizer,
        processor=None,
        hf_model_type=None,
        dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data),
        tools=ToolListWrap([]),
    )


def exported_row(tmp_path):
    """A row as `attune export verl --multi-turn` writes it, read back from parquet."""
    path = export_verl([ds.example("u1")], tmp_path / "train.parquet", agent_name=TALK_AGENT)
    [row] = read_verl(path.out)
    assert row["agent_name"] == TALK_AGENT
    return {"raw_prompt": row["prompt"], "extra_info": row["extra_info"], "agent_name": TALK_AGENT}


def run(entry, tokenizer, manager, config, row):
    """Build the loop inside the running event loop (as verl's worker does) and run it."""

    async def go():
        loop = build_loop(entry, tokenizer, manager, config)
        return await loop.run({"temperature": 1.0}, **row)

    return asyncio.run(go())


def test_the_talk_loop_masks_the_users_turns_and_returns_the_talks_reward(tmp_path):
    tokenizer = chatml_tokenizer()
    manager = FakeServerManager(tokenizer)
    responder = TalkResponder(change=lambda reply: 10)
    with SimServer(SimConfig(base_latency=0.0, per_output_token=0.0, responder=responder)) as srv:
        entry = {
            "name": TALK_AGENT,
            "_target_": "attunement.integrations.verl_agent.TalkAgentLoop",
            "simulator": f"openai:{srv.base_url}#sim",
            "max_turns": 3,
        }
        out = run(entry, tokenizer, manager, trainer_config(), exported_row(tmp_path))
    # three replies, +10 each: 40 -> 70, the talk's reward is 0.7
    assert out.reward_score == pytest.approx(0.7)
    assert out.extra_fields["unscorable"] == 0 and out.extra_fields["final_emotion"] == 70
    assert len(manager.calls) == 3
    ids = out.prompt_ids + out.response_ids
    assert len(out.response_mask) == len(out.response_ids) == len(out.response_logprobs)
    for call in manager.calls:  # each reply generated from a prefix of the trained sequence
        assert ids[: len(call["prompt_ids"])] == call["prompt_ids"]
    policy = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if m])
    env = tokenizer.decode([t for t, m in zip(out.response_ids, out.response_mask) if not m])
    assert all(f"Reply {k}" in policy for k in (1, 2, 3)) and "Plan" not in policy
    assert env.count("<|im_start|>user") == 2 and "Reply" not in env
    # verl's as_dict puts the trajectory reward on the last response token
    tensors = out.as_dict()
    assert float(tensors["rm_scores"][-1]) == pytest.approx(0.7)
    assert float(tensors["rm_scores"][:-1].abs().sum()) == 0.0


def test_an_unscorable_talk_gets_the_named_fallback(tmp_path):
    tokenizer = chatml_tokenizer()

    def unreadable(messages, index, params):
        return "I feel things."  # never a Change: line

    with SimServer(SimConfig(base_latency=0.0, per_output_token=0.0, responder=unreadable)) as srv:
        entry = {
            "name": "talk-fallback",
            "_target_": "attunement.integrations.verl_agent.TalkAgentLoop",
            "simulator": f"openai:{srv.base_url}#sim",
            "fallback_score": -1.0,
            "user": {"max_resamples": 0},
        }
        out = run(entry, tokenizer, FakeServerManager(tokenizer), trainer_config(),
                  exported_row(tmp_path))  # fmt: skip
    assert out.reward_score == -1.0 and out.extra_fields["unscorable"] == 1
    assert "unreadable" in out.extra_fields["unscorable_reason"]


def test_a_talk_that_outgrows_the_response_length_is_cut_and_unscorable(tmp_path):
    tokenizer = chatml_tokenizer()
    responder = TalkResponder(change=lambda reply: 1)
    with SimServer(SimConfig(base_latency=0.0, per_output_token=0.0, responder=responder)) as srv:
        entry = {
            "name": "talk-short",
            "_target_": "attunement.integrations.verl_agent.TalkAgentLoop",
            "simulator": f"openai:{srv.base_url}#sim",
            "max_turns": 10,
        }
        out = run(entry, tokenizer, FakeServerManager(tokenizer), trainer_config(40),
                  exported_row(tmp_path))  # fmt: skip
    assert out.extra_fields["unscorable_reason"] == "response_length"
    assert len(out.response_ids) <= 40 and out.extra_fields["unscorable"] == 1


def test_a_loop_without_a_simulator_says_where_to_set_it():
    tokenizer = chatml_tokenizer()
    entry = {"name": "talk-bare", "_target_": "attunement.integrations.verl_agent.TalkAgentLoop"}
    with pytest.raises(Exception, match="agent_loop_config_path"):
        run(entry, tokenizer, FakeServerManager(tokenizer), trainer_config(), {})


def test_rows_carry_agent_name_only_when_asked():
    plain_rows = asyncio.run(verl_rows([ds.example("u1")]))
    assert "agent_name" not in plain_rows[0]
    talk_rows = asyncio.run(verl_rows([ds.example("u1")], agent_name=TALK_AGENT))
    assert talk_rows[0]["agent_name"] == TALK_AGENT


# --------------------------------------------------------------------------- the docs' config


def docs_block(heading: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    at = text.index(heading)
    return re.search(r"```(?:bash|yaml)\n(.*?)```", text[at:], re.DOTALL).group(1)


def test_the_copyable_multi_turn_config_passes_verls_own_checks(tmp_path):
    import verl
    from hydra import compose, initialize_config_dir
    from verl.utils.config import validate_config

    command = docs_block("#### Multi-turn: the command")
    overrides = [
        tok.strip().strip("\\").strip()
        for tok in command.split()
        if "=" in tok and not tok.startswith(("python", "-m"))
    ]
    overrides = [o for o in overrides if o and not o.startswith("$")]
    assert any(
        o.startswith("actor_rollout_ref.rollout.agent.agent_loop_config_path=") for o in overrides
    )
    folder = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=folder, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    validate_config(config, use_reference_policy=True, use_critic=False)
    # the agent loop file of the docs is a list verl can load, naming our loop
    entries = OmegaConf.create(
        docs_block("#### Multi-turn: the agent loop file").replace("$SIM", "x")
    )
    [entry] = list(entries)
    assert entry.name == TALK_AGENT and entry._target_.endswith("TalkAgentLoop")
