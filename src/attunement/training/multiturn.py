"""Multi-turn GRPO on TRL: the policy talks with a simulated user, the talk is rewarded.

TRL 1.16's ``GRPOTrainer`` takes a ``rollout_func(prompts, trainer)`` that
replaces its own generation: it gets the prompts of the process's batch (each
prompt already repeated ``num_generations`` times) and returns per rollout
``prompt_ids``, ``completion_ids`` and ``logprobs``; any other key travels to
the reward functions as a column, and ``env_mask`` (1 for the policy's own
tokens, 0 for the environment's) is multiplied into the loss mask.
:class:`MultiTurnRollout` is that function:

- each prompt is a training row's prompt (the reply prompt under the row's
  memory mode); its example becomes a simulated user
  (:func:`attunement.dialogue.user_from_example`: persona, every memory,
  situation, hidden need);
- the talk is :meth:`attunement.dialogue.Conversation.play`, the same loop
  ``attune converse`` runs, with the policy side played by the model being
  trained (:class:`TokenTalk`) and the user by the simulator model on its
  server, up to ``max_turns`` user messages;
- one talk is **one token sequence**: the prompt, then each reply as the
  policy generated it (mask 1) and between replies the user's next message as
  the chat template writes it (mask 0, :func:`between_turns`); each reply is
  generated from exactly that sequence, so the tokens trained on are the
  tokens sampled;
- the reward is the talk's (:func:`attunement.dialogue.trajectory_reward`):
  ``r = (1 - w) * e_final / 100 + w * m``, the final emotion, optionally mixed
  with the mean per-turn judge reward ``m`` (each reply judged in its dialogue
  with the run's reward, ``--turn-weight w``). An unscorable talk, or one
  whose simulator call failed, has no reward (TRL gives it advantage 0); after
  ``abort_after`` batches with no talk scored, training stops.

The simulator and the judge are opened on the rollout's own event loop (a
daemon thread), the policy's generation runs in a worker thread one call at a
time, so the simulator calls of the batch's talks overlap the policy's
decoding. Every talk is written to the run folder's ``dialogues.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attunement.dialogue import (
    Conversation,
    ConverseSettings,
    Dialogue,
    DialogueScore,
    PersonaEmpSimulator,
    TranscriptAssistant,
    UserModel,
    attach_turn_rewards,
    judge_dialogue,
    max_assessments,
    score_dialogue,
    trajectory_reward,
    user_from_example,
)
from attunement.jsonl import JsonlAppender
from attunement.llm import load_chat_model
from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError, Message
from attunement.policy import GenerationSettings
from attunement.records import Example
from attunement.training.config import MultiTurnSettings

#: the metrics the dialogue reward logs each step, under ``rewards/dialogue/``
DIALOGUE_METRICS = (
    "final_emotion",
    "success",
    "turns",
    "unscorable_frac",
    "failed_frac",
    "seconds",
)


def prompt_key(prompt: Sequence[Message]) -> str:
    """A training prompt as a lookup key (rows are found again by their prompt)."""
    return json.dumps([[m["role"], m["content"]] for m in prompt], ensure_ascii=False)


# --------------------------------------------------------------------------- tokens


def between_turns(
    tokenizer: Any, before: Sequence[Message], after: Sequence[Message], eos_done: bool
) -> list[int]:
    """The tokens that follow a generated reply (``before`` ends with it) up to the
    point where the policy writes its next one (``after`` ends with the user's
    message): the end of the reply's turn the policy did not write, the user's
    turn and the generation prompt, exactly as the chat template lays them out.

    ``eos_done``: the generated reply ended with the end-of-turn token itself.
    A template that does not extend a conversation by appending (one that
    rewrites earlier turns) cannot be trained on this way and is refused.
    """
    if list(after[: len(before)]) != list(before):
        raise ValueError("the next prompt does not extend the talk so far")
    text_a = tokenizer.apply_chat_template(list(before), tokenize=False)
    text_b = tokenizer.apply_chat_template(list(after), tokenize=False, add_generation_prompt=True)
    if not text_b.startswith(text_a):
        raise ValueError(
            "the chat template rewrites earlier turns when a turn is added; multi-turn "
            "training needs a template that extends a conversation by appending"
        )
    content = before[-1]["content"]
    at = text_a.rfind(content) if content else text_a.rfind("\n") + 1
    if at < 0:
        raise ValueError("the chat template changed the reply's text; cannot align its tokens")
    close = text_a[at + len(content) :]
    if eos_done:
        eos = tokenizer.eos_token or ""
        if not close.startswith(eos):
            raise ValueError(f"the template does not close a turn with {eos!r}")
        close = close[len(eos) :]
    return tokenizer(close + text_b[len(text_a) :], add_special_tokens=False)["input_ids"]


class TokenTalk(ChatModel):
    """The policy's side of one talk, as one token sequence that each reply extends.

    ``generate(ids)`` samples a reply's token ids from the sequence so far (the
    trained model). ``ids[:prompt_length]`` is the prompt, the rest the
    completion, with ``mask`` 1 on the policy's tokens and 0 on the user's.
    """

    max_concurrency = 1

    def __init__(self, tokenizer: Any, generate: Callable[[list[int]], list[int]], name: str):
        super().__init__()
        self.tokenizer = tokenizer
        self.generate = generate
        self.name = name
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.prompt_length = 0
        self._messages: list[Message] | None = None
        self._eos_done = False

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        if request.n != 1:
            raise ValueError("a talk has one reply per turn")
        messages = request.message_dicts
        if self._messages is None:
            self.ids = list(
                self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            )
            self.prompt_length = len(self.ids)
        else:
            added = between_turns(self.tokenizer, self._messages, messages, self._eos_done)
            self.ids += added
            self.mask += [0] * len(added)
        before = len(self.ids)
        reply = await asyncio.to_thread(self.generate, list(self.ids))
        self.ids += reply
        self.mask += [1] * len(reply)
        eos = self.tokenizer.eos_token_id
        self._eos_done = bool(reply) and reply[-1] == eos
        text = self.tokenizer.decode(reply, skip_special_tokens=True)
        self._messages = [*messages, {"role": "assistant", "content": text}]
        return [
            Completion(
                text=text,
                prompt_tokens=before,
                completion_tokens=len(reply),
                sample_index=request.sample_start,
                finish_reason="stop" if self._eos_done else "length",
            )
        ]

    @property
    def completion(self) -> list[int]:
        return self.ids[self.prompt_length :]


def trainer_generate(trainer: Any, tokenizer: Any, *, max_new_tokens: int, temperature: float):
    """``generate(ids) -> reply ids`` with the model being trained (sampled, one call
    at a time, cut after the first end-of-turn token)."""
    lock = threading.Lock()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def generate(ids: list[int]) -> list[int]:
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model)
        with lock, torch.no_grad():
            inputs = torch.tensor([ids], device=model.device)
            out = model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=temperature,
                pad_token_id=pad,
                eos_token_id=eos,
            )
        reply = out[0, len(ids) :].tolist()
        return reply[: reply.index(eos) + 1] if eos in reply else reply

    return generate


# --------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """One talk as TRL takes it, with its reward and figures."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    reward: float | None
    score: DialogueScore | None
    failed: str | None = None


class MultiTurnRollout:
    """TRL's ``rollout_func`` for talks with simulated users (see the module docstring)."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        settings: MultiTurnSettings,
        policy: GenerationSettings,
        tokenizer: Any,
        *,
        num_generations: int,
        reward_spec: Any = None,
        record: Path | None = None,
        abort_after: int = 5,
        simulator_model: ChatModel | None = None,
        examples: Sequence[Example] = (),
    ):
        """``simulator_model``: an open model to play the users instead of loading
        ``settings.simulator`` (tests); ``make_generate(trainer)`` builds the
        policy's sampler (default :func:`trainer_generate`). ``examples``: the
        records the rows' ``example_id`` name (training rows carry ids only)."""
        self.settings = settings
        self.tokenizer = tokenizer
        self.num_generations = num_generations
        self.reward_spec = reward_spec
        self.policy = policy
        self.abort_after = abort_after
        self.simulator_model = simulator_model
        self.make_generate: Callable[[Any], Callable[[list[int]], list[int]]] = lambda trainer: (
            trainer_generate(
                trainer,
                tokenizer,
                max_new_tokens=policy.max_tokens,
                temperature=policy.temperature,
            )
        )
        self.examples: dict[str, Example] = {}
        self.prompts: dict[str, list[Message]] = {}
        by_id = {ex.example_id: ex for ex in examples}
        for row in rows:
            key = prompt_key(row["prompt"])
            if key in self.examples:
                raise ValueError(f"two training rows have the same prompt ({row['example_id']})")
            self.examples[key] = by_id[row["example_id"]]
            self.prompts[key] = list(row["prompt"])
        self.users = {k: user_from_example(ex) for k, ex in self.examples.items()}
        self.talk = ConverseSettings(
            policy=policy, simulator=settings.user, max_turns=settings.max_turns
        )
        self.steps = max_assessments(settings.max_turns, assess_last_reply=True)
        self.record = record
        self.last: list[Rollout] = []
        self.seconds = 0.0
        self.empty_batches = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stack: AsyncExitStack | None = None
        self._users: UserModel | None = None
        self._judge: Any = None
        self._sink: JsonlAppender | None = None

    # ------------------------------------------------------------------ lifetime

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="multiturn-rollout", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    async def _open(self) -> None:
        if self._users is not None:
            return
        stack = AsyncExitStack()
        model = self.simulator_model
        if model is None:
            model = await stack.enter_async_context(
                load_chat_model(self.settings.simulator, self.settings.options)
            )
            await model.ensure_ready()
        if self.settings.turn_weight > 0 and self._judge is None:
            if self.reward_spec is None:
                raise ValueError("turn_weight > 0 needs the reward that judges each reply")
            self._judge = await stack.enter_async_context(self.reward_spec.open())
        self._users = UserModel(model, PersonaEmpSimulator(), self.settings.user)
        self._stack = stack

    def close(self) -> None:
        """Close the simulator and the judge, stop the loop, close the record."""
        if self._loop is not None:
            if self._stack is not None:
                stack, self._stack = self._stack, None
                asyncio.run_coroutine_threadsafe(stack.aclose(), self._loop).result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop, self._thread, self._users = None, None, None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    # ------------------------------------------------------------------ the call

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        step = int(getattr(trainer.state, "global_step", 0))
        keys = [prompt_key(p) for p in prompts]
        unknown = [k for k in keys if k not in self.examples]
        if unknown:
            raise ValueError("a prompt that is no training row's reached the rollout")
        seen: Counter[str] = Counter()
        indices = []
        for key in keys:
            indices.append(step * self.num_generations + seen[key])
            seen[key] += 1
        generate = self.make_generate(trainer)
        loop = self._start()
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(self._play_all(keys, indices, generate), loop)
        self.last = future.result()
        self.seconds = time.perf_counter() - started
        self._check_alive()
        return self.columns(self.last)

    def _check_alive(self) -> None:
        scored = sum(1 for r in self.last if r.reward is not None)
        self.empty_batches = 0 if scored else self.empty_batches + 1
        limit = self.abort_after
        if limit and self.empty_batches >= limit:
            reasons = Counter(r.failed or "unscorable" for r in self.last)
            raise RuntimeError(
                f"no talk of the last {limit} batches could be scored ({dict(reasons)}); "
                "is the simulator server up and answering in the asked format?"
            )

    @staticmethod
    def columns(rollouts: Sequence[Rollout]) -> dict[str, Any]:
        """TRL's output dict (``env_mask`` masks the user's turns out of the loss)."""
        return {
            "prompt_ids": [r.prompt_ids for r in rollouts],
            "completion_ids": [r.completion_ids for r in rollouts],
            "logprobs": None,
            "env_mask": [r.env_mask for r in rollouts],
            "dialogue_reward": [r.reward for r in rollouts],
        }

    async def _play_all(
        self, keys: list[str], indices: list[int], generate: Callable[[list[int]], list[int]]
    ) -> list[Rollout]:
        await self._open()
        return list(
            await asyncio.gather(*(self._play(k, i, generate) for k, i in zip(keys, indices)))
        )

    async def _play(
        self, key: str, index: int, generate: Callable[[list[int]], list[int]]
    ) -> Rollout:
        if self._users is None:
            raise RuntimeError("the rollout is not open")
        user = self.users[key]
        policy = TokenTalk(self.tokenizer, generate, name="policy-in-training")
        assistant = TranscriptAssistant(self.prompts[key], memory_mode=self.policy.memory_mode)
        talk = Conversation(policy, assistant, self._users, self.talk)
        try:
            dialogue = await talk.play(user, sample_index=index)
        except LLMError as exc:
            failed = f"{type(exc).__name__}: {exc}"
            return Rollout(policy.ids[: policy.prompt_length], policy.completion, policy.mask,
                           None, None, failed)  # fmt: skip
        score = await self._score(dialogue, user)
        self._write(dialogue)
        return Rollout(
            policy.ids[: policy.prompt_length],
            policy.completion,
            policy.mask,
            trajectory_reward(score, turn_weight=self.settings.turn_weight),
            score,
        )

    async def _score(self, dialogue: Dialogue, user: Any) -> DialogueScore:
        score = score_dialogue(dialogue, steps=self.steps)
        if self._judge is None or score.unscorable:
            return score
        breakdowns = await judge_dialogue(self._judge, dialogue, user)
        return attach_turn_rewards(score, {b.reply_id: b for b in breakdowns}, dialogue)

    def _write(self, dialogue: Dialogue) -> None:
        if self.record is None:
            return
        if self._sink is None:
            self._sink = JsonlAppender(self.record)
        self._sink.write(dialogue)

    def manifest(self) -> dict[str, Any]:
        judge = self._judge.manifest() if self._judge is not None else None
        return {
            "multi_turn": self.settings.model_dump(mode="json"),
            "simulator": self._users.settings_record() if self._users is not None else None,
            "turn_judge": judge,
        }


class DialogueReward:
    """TRL's reward function of multi-turn GRPO: each talk's reward, computed by the
    rollout (``dialogue_reward`` column); logs the talks' figures each step."""

    def __init__(self, rollout: MultiTurnRollout):
        self.rollout = rollout
        #: TRL names the reward after this (metric keys ``rewards/dialogue/...``)
        self.__name__ = "dialogue"

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        dialogue_reward: list[float | None] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        if dialogue_reward is None or len(dialogue_reward) != len(completions):
            raise ValueError("the dialogue reward needs the rollout's dialogue_reward column")
        if log_metric is not None:
            for key, value in self.figures().items():
                log_metric(f"rewards/dialogue/{key}", value)
        return list(dialogue_reward)

    def figures(self) -> dict[str, float]:
        """Means over the last batch's talks (0 where no talk was scored)."""
        talks = self.rollout.last
        scored = [r.score for r in talks if r.score is not None and not r.score.unscorable]
        n = max(1, len(talks))

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        return {
            "final_emotion": mean([float(s.final_emotion or 0) for s in scored]),
            "success": mean([float(s.success) for s in scored]),
            "turns": mean([float(s.assistant_turns) for s in scored]),
            "unscorable_frac": sum(1 for r in talks if r.reward is None) / n,
            "failed_frac": sum(1 for r in talks if r.failed) / n,
            "seconds": self.rollout.seconds,
        }

    def manifest(self) -> dict[str, Any]:
        return self.rollout.manifest()

    async def aclose(self) -> None:
        self.rollout.close()
