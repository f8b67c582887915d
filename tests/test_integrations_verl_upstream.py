"""Our verl integration against verl's own code (the ``verl`` extra, verl 0.9.1, CPU).

- Validation: our per-sample dicts go through verl's ``naive`` reward manager
  (loaded by verl's ``get_custom_reward_fn`` from the documented config) and
  then through the validation of both trainers: the v1 trainer (default since
  0.9; its TransferQueue storage replaced by a dict) and the legacy one
  (``trainer.use_v1=false``). A plain ``reward`` key broke the legacy one's
  length check and doubled the v1 one's headline column.
- The documented commands: every ``verl.trainer.main_ppo`` command in the docs
  is composed with hydra against verl's packaged ``ppo_trainer`` config and
  checked with ``verl.utils.config.validate_config``, its reward manager
  resolved from verl's registry, its custom function loaded by verl and its
  ``reward_kwargs`` validated by us.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
from scale_helpers import ScriptedJudge, bench_batch

from attunement.integrations import verl as attune_verl
from attunement.integrations.outcomes import KEY_PREFIX

verl = pytest.importorskip("verl", reason="verl 0.9.1: pip install verl==0.9.1 cachetools")
torch = pytest.importorskip("torch")
from omegaconf import OmegaConf

DOCS = Path(__file__).resolve().parents[1] / "docs"
N = 4  # replies per validation prompt (actor_rollout_ref.rollout.val_kwargs.n)
SOLUTIONS = [
    "# Analysis\nShe feels unseen.\n\n# Response\nThat sounds exhausting, and it makes sense.",
    "# Analysis\nHe is anxious.\n\n# Response\nCalm down, it is fine.",
    "# Analysis\nShe is proud.\n\n# Response\nYou worked so hard for this; I am glad for you.",
    "# Analysis\nTired.\n\n# Response\nOk.",
]


class Tokenizer:
    """Token i+1 decodes to SOLUTIONS[i] (verl decodes the response ids)."""

    eos_token_id = 0
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        first = int(ids[0]) if len(ids) else 0
        return SOLUTIONS[first - 1] if first else ""


def reward_config(judge: ScriptedJudge):
    """The documented reward section, with the test judge."""
    return OmegaConf.create(
        {
            "reward": {
                "reward_manager": {"name": "naive", "source": "register"},
                "custom_reward_function": {
                    "path": "pkg://attunement.integrations.verl",
                    "name": "compute_score_async",
                    "reward_kwargs": {
                        "reward": "peregrm@1",
                        "judge": judge.spec,
                        "overrides": {"output": "text"},
                        "group_size": N,
                        "coordinator": "local",
                    },
                },
            },
            "actor_rollout_ref": {"rollout": {"val_kwargs": {"n": N, "do_sample": True}}},
            "trainer": {"log_val_generations": 0, "validation_data_dir": None},
        }
    )


class Scorer:
    """verl's naive reward manager with our function, as a reward-loop worker runs it."""

    def __init__(self, config):
        from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
        from verl.trainer.ppo.reward import get_custom_reward_fn

        self.manager = NaiveRewardManager(config, Tokenizer(), get_custom_reward_fn(config))
        self.turn = 0

    def sample(self, data_source, reward_model, extra_info):
        """One finished sample through ``run_single`` (its response: the next solution)."""
        from verl import DataProto

        self.turn += 1
        token = (self.turn * 7) % len(SOLUTIONS) + 1
        item = DataProto.from_dict(
            tensors={
                "prompts": torch.ones((1, 3), dtype=torch.long),
                "responses": torch.full((1, 4), token, dtype=torch.long),
                "attention_mask": torch.ones((1, 7), dtype=torch.long),
            },
            non_tensors={
                "data_source": np.array([data_source], dtype=object),
                "reward_model": np.array([reward_model], dtype=object),
                "extra_info": np.array([dict(extra_info)], dtype=object),
            },
        )
        return self.manager.loop.run_until_complete(self.manager.run_single(item))

    def close(self):
        self.manager.loop.run_until_complete(attune_verl.aclose())


def val_batches(split: str = "test"):
    """Two validation batches of two prompts each, as verl's dataset gives them."""
    examples, _ = bench_batch(4, 1)
    rows = asyncio.run(attune_verl.verl_rows(examples, split=split))
    out = []
    for part in (rows[:2], rows[2:]):
        out.append(
            {
                "data_source": np.array([r["data_source"] for r in part], dtype=object),
                "reward_model": np.array([r["reward_model"] for r in part], dtype=object),
                "extra_info": np.array([r["extra_info"] for r in part], dtype=object),
            }
        )
    return out


def headline(metrics: dict, scores: list[float]) -> None:
    """verl's headline is the mean of the scores we returned; our keys are ours."""
    assert metrics[f"val-core/attunement/reward/mean@{N}"] == pytest.approx(np.mean(scores))
    assert f"val-aux/attunement/{KEY_PREFIX}unscorable/mean@{N}" in metrics
    assert not any("/acc/" in k for k in metrics)


# --------------------------------------------------------------------------- legacy trainer


class LegacyRollout:
    """Stands in for the agent loop: generation, then each sample's reward through the
    reward manager, assembled as ``AgentLoopWorker._postprocess`` does (the score at the
    last response token, every key of the first sample's extra info as a column)."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.scores: list[float] = []

    def generate_sequences(self, gen):
        from verl import DataProto

        nt = gen.non_tensor_batch
        results = [
            self.scorer.sample(nt["data_source"][i], nt["reward_model"][i], nt["extra_info"][i])
            for i in range(len(gen))
        ]
        self.scores += [r["reward_score"] for r in results]
        n = len(results)
        rm_scores = torch.zeros((n, 4))
        rm_scores[:, -1] = torch.tensor([r["reward_score"] for r in results])
        keys = list(results[0]["reward_extra_info"])
        return DataProto.from_dict(
            tensors={
                "prompts": torch.ones((n, 3), dtype=torch.long),
                "responses": torch.ones((n, 4), dtype=torch.long),
                "rm_scores": rm_scores,
            },
            non_tensors={k: np.array([r["reward_extra_info"][k] for r in results]) for k in keys},
            meta_info={"reward_extra_keys": keys},
        )


def test_legacy_trainers_validation_takes_our_outputs():
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    judge = ScriptedJudge()
    config = reward_config(judge)
    config.actor_rollout_ref.rollout.agent = {"num_workers": 1}
    scorer = Scorer(config)
    rollout = LegacyRollout(scorer)
    trainer = object.__new__(RayPPOTrainer)  # only what _validate reads
    trainer.config, trainer.tokenizer = config, Tokenizer()
    trainer.async_rollout_manager, trainer.use_rm, trainer.global_steps = rollout, False, 0
    trainer.val_dataloader = [
        dict(
            b,
            dummy=torch.zeros(len(b["data_source"]), 1),
            uid=np.array([str(uuid.uuid4()) for _ in b["data_source"]], dtype=object),
        )
        for b in val_batches()
    ]
    try:
        metrics = trainer._validate()
    finally:
        scorer.close()
    assert len(rollout.scores) == 4 * N
    headline(metrics, rollout.scores)


# --------------------------------------------------------------------------- v1 trainer


class KVStore:
    """TransferQueue's key-value calls over a dict (the trainer's storage service)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def kv_batch_put(self, keys, partition_id, tags=None, fields=None):
        pass

    def kv_batch_get(self, keys, partition_id, select_fields):
        out = {}
        for f in select_fields:
            values = [self.rows[k][f] for k in keys]
            if f in ("prompts", "responses"):
                out[f] = torch.nested.nested_tensor(values)
            elif f == "rm_scores":
                out[f] = torch.stack(values)
            else:
                column = np.empty(len(values), dtype=object)
                column[:] = values
                out[f] = column
        return out

    def kv_clear(self, keys, partition_id):
        for k in keys:
            self.rows.pop(k, None)


def _transfer_queue_module():
    """verl's v1 trainer imports TransferQueue (verl's ``verl-core`` extra); where it is
    not installed, a module with the one name imported at import time."""
    try:
        import transfer_queue  # noqa: F401
    except ImportError:
        module = types.ModuleType("transfer_queue")

        class KVBatchMeta:
            def __init__(self, keys, partition_id):
                self.keys, self.partition_id = keys, partition_id

        module.KVBatchMeta = KVBatchMeta
        sys.modules["transfer_queue"] = module
    return sys.modules["transfer_queue"]


class V1AgentLoop:
    """Generation and per-sample rewards written to the store under verl's keys
    (``{uid}_{session}_{index}``), with the reward's extra info in ``extra_fields``."""

    def __init__(self, scorer: Scorer, store: KVStore, meta):
        self.scorer, self.store, self.meta = scorer, store, meta
        self.keys: list[str] = []
        self.scores: list[float] = []

    def generate_sequences(self, batch):
        self.keys = []
        for i, uid in enumerate(batch["uid"]):
            for j in range(N):
                r = self.scorer.sample(
                    batch["data_source"][i], batch["reward_model"][i], batch["extra_info"][i]
                )
                self.scores.append(r["reward_score"])
                rm = torch.zeros(4)
                rm[-1] = r["reward_score"]
                key = f"{uid}_{j}_0"
                self.keys.append(key)
                self.store.rows[key] = {
                    "prompts": torch.ones(3, dtype=torch.long),
                    "responses": torch.ones(4, dtype=torch.long),
                    "uid": uid,
                    "rm_scores": rm,
                    "num_turns": 2,
                    "reward_model": batch["reward_model"][i],
                    "data_source": batch["data_source"][i],
                    "extra_fields": {"reward_extra_info": r["reward_extra_info"]},
                }

    def sample(self, global_steps, partition_id, batch_size):
        return self.meta(list(self.keys), partition_id), None


def test_v1_trainers_validation_takes_our_outputs(monkeypatch):
    tq = _transfer_queue_module()
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    store = KVStore()
    monkeypatch.setattr(
        trainer_base,
        "tq",
        types.SimpleNamespace(
            kv_batch_put=store.kv_batch_put,
            kv_batch_get=store.kv_batch_get,
            kv_clear=store.kv_clear,
        ),
    )
    judge = ScriptedJudge()
    config = reward_config(judge)
    scorer = Scorer(config)
    loop = V1AgentLoop(scorer, store, tq.KVBatchMeta)
    trainer = object.__new__(PPOTrainerSync)  # only what _validate reads
    trainer.config, trainer.tokenizer, trainer.global_steps = config, Tokenizer(), 0
    trainer.agent_loop_manager, trainer.replay_buffer = loop, loop
    trainer.reward_loop_manager = types.SimpleNamespace(reward_loop_worker_handles=["worker"])
    trainer.val_dataloader = [
        dict(b, raw_prompt=np.array([[{"role": "user", "content": "hi"}]] * 2, dtype=object))
        for b in val_batches()
    ]
    try:
        metrics = trainer._validate()
    finally:
        scorer.close()
    assert len(loop.scores) == 4 * N
    headline(metrics, loop.scores)


# --------------------------------------------------------------------------- documented commands


def documented_commands(entry: str) -> list[tuple[str, list[str]]]:
    """(file, arguments after ``entry``) of every fenced shell command in the docs."""
    found = []
    for path in sorted(DOCS.glob("*.md")):
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), re.DOTALL):
            text = block.replace("\\\n", " ")
            for line in text.splitlines():
                if entry in line:
                    words = shlex.split(line, comments=True)
                    found.append((path.name, words[words.index(entry) + 1 :]))
    return found


VERL_COMMANDS = documented_commands("verl.trainer.main_ppo")


def test_the_docs_have_verl_commands():
    assert {name for name, _ in VERL_COMMANDS} >= {"scale-out.md", "training.md"}


@pytest.mark.parametrize("doc,overrides", VERL_COMMANDS, ids=[d for d, _ in VERL_COMMANDS])
def test_documented_verl_command_passes_verls_own_checks(doc, overrides):
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    validate_config(
        config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
    )
    assert config.data.val_files != "~/data/rlhf/gsm8k/test.parquet", "data.val_files is missing"
    resolve_reward_manager_cls(config)  # a name verl's registry knows
    fn = get_custom_reward_fn(config)
    if config.actor_rollout_ref.rollout.multi_turn.enable:
        # the talk's reward comes from the agent loop (test_integrations_verl_agent.py)
        assert config.actor_rollout_ref.rollout.agent.agent_loop_config_path
        assert fn is None
        return
    assert fn is not None and fn.args[0] is attune_verl.compute_score_async
    attune_verl.settings_from_kwargs(fn.args[1])  # every reward_kwargs key is one of ours
    if config.reward.reward_manager.name == "rate_limited":
        # it reads these from config.reward; its timeout must not fire before our deadline
        settings = attune_verl.settings_from_kwargs(fn.args[1])
        assert config.reward.max_concurrent > 1
        assert config.reward.timeout > settings.deadline


def test_reward_managers_the_docs_name_are_verls():
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    text = (DOCS / "scale-out.md").read_text()
    table = text[text.index("| `reward.reward_manager.name`") :].split("\n\n")[0]
    names = re.findall(r"^\| `(\w+)`", table, re.MULTILINE)
    assert names and "batch" not in names
    for name in names:
        get_reward_manager_cls(name)
