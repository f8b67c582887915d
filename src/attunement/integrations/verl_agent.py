"""Multi-turn training on verl: an agent loop that talks with a simulated user.

verl 0.9.1 runs rollouts through *agent loops*
(``verl/experimental/agent_loop/``): an :class:`AgentLoopBase` subclass,
registered by name with ``@register``, chosen per sample by the dataset's
``agent_name`` column, whose ``run(sampling_params, **row)`` generates through
verl's server manager (``server_manager.generate(prompt_ids=...)``) and returns
an ``AgentLoopOutput``: prompt ids, response ids, a ``response_mask`` (1 on
the model's own tokens, 0 on everything else) and optionally the trajectory's
``reward_score``. (The older ``BaseInteraction`` interface is gone in 0.9.1.)

:class:`TalkAgentLoop` (``agent_name = "attunement_talk"``):

- the row is one ``attune export verl --multi-turn`` row: the reply prompt
  (``raw_prompt``) and the example in ``extra_info``; the example becomes a
  simulated user (persona, every memory, situation, hidden need);
- the talk is :meth:`attunement.dialogue.Conversation.play`, the loop ``attune
  converse`` runs: the policy's side generates through verl's server manager
  from one growing token sequence, built with verl's own Continuous Token
  helpers (``ct_build_initial_tokens``, ``ct_merge_assistant_token`` after
  each reply, ``ct_merge_context_msg`` for each user message), so the user's
  turns are masked out of ``response_mask`` exactly as verl masks tool output;
- ``reward_score`` is the talk's reward
  (:func:`attunement.dialogue.trajectory_reward`: ``(1 - w) e/100 + w m``),
  and the talk's figures go into ``extra_fields``. An unscorable talk (or one
  whose simulator failed, or that outgrew ``response_length``) gets
  ``fallback_score`` with ``unscorable = 1`` in its extra fields: verl needs a
  number, so the fallback is named and counted (``algorithm.filter_groups``
  can drop such groups).

Settings come from the agent loop's config entry (verl's
``actor_rollout_ref.rollout.agent.agent_loop_config_path``, a YAML list whose
extra keys hydra passes to the constructor): ``simulator`` (a model spec),
``max_turns``, ``turn_weight``, ``fallback_score``, the simulator's
``concurrency``/``timeout``/``retries`` and ``user`` sampling, and for
``turn_weight > 0`` the per-turn ``reward`` and ``judge``. The simulator
client (and judge) is opened once per worker process and event loop.
docs/scale-out.md has a copyable config.

verl is imported at the top: this module *is* the verl side (verl imports it
by the ``_target_`` of its config entry); nothing else in attunement imports it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register

from attunement.dialogue import (
    Conversation,
    ConverseSettings,
    DialogueScore,
    PersonaEmpSimulator,
    SimulatorSettings,
    TranscriptAssistant,
    UserModel,
    attach_turn_rewards,
    judge_dialogue,
    max_assessments,
    score_dialogue,
    trajectory_reward,
    user_from_example,
)
from attunement.integrations.verl_data import TALK_AGENT, example_from_extra_info, plain
from attunement.judging import RewardSpec
from attunement.llm import LLMOptions, load_chat_model
from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError, Message
from attunement.policy import GenerationSettings

#: the name rows choose this loop by (``agent_name`` column of the parquet)
AGENT_NAME = TALK_AGENT


class TalkLoopSettings(BaseModel):
    """The agent loop's settings (its config entry's extra keys)."""

    model_config = ConfigDict(extra="forbid")

    simulator: str = Field(description="the model that plays the simulated users (a model spec)")
    max_turns: int = Field(3, ge=1, description="user messages per talk")
    turn_weight: float = Field(0.0, ge=0.0, le=1.0, description="w in (1-w) e/100 + w m")
    fallback_score: float = Field(0.0, description="reward of an unscorable talk (counted)")
    concurrency: int = Field(64, ge=1, description="simulator requests in flight per process")
    timeout: float = Field(120.0, gt=0, description="deadline of one simulator call, s")
    retries: int = Field(4, ge=0, description="retries of a simulator call")
    user: SimulatorSettings = Field(default_factory=SimulatorSettings)
    reward: str = Field("peregrm", description="the per-turn judge's reward (turn_weight > 0)")
    judge: str | None = Field(None, description="the per-turn judge model (turn_weight > 0)")

    def options(self) -> LLMOptions:
        return LLMOptions(
            concurrency=self.concurrency, timeout=self.timeout, max_retries=self.retries
        )


#: per (event loop, settings): the simulated-user model and the turn judge of a process
_OPEN: dict[tuple[int, str], tuple[UserModel, Any]] = {}


async def open_talk_models(settings: TalkLoopSettings) -> tuple[UserModel, Any]:
    """The simulator (and turn judge) for ``settings``, opened once per process and loop."""
    key = (id(asyncio.get_running_loop()), settings.model_dump_json())
    if key not in _OPEN:
        model = load_chat_model(settings.simulator, settings.options())
        await model.ensure_ready()
        judge = None
        if settings.turn_weight > 0:
            if not settings.judge:
                raise ValueError("turn_weight > 0 needs a judge (the per-turn reward's model)")
            spec = RewardSpec(reward=settings.reward, judge=settings.judge)
            judge_model = load_chat_model(spec.judge, settings.options())
            judge = spec.load(judge_model)
        _OPEN[key] = (UserModel(model, PersonaEmpSimulator(), settings.user), judge)
    return _OPEN[key]


class ResponseFull(Exception):
    """The talk's tokens reached verl's ``response_length``."""


class VerlTalkPolicy(ChatModel):
    """The policy's side of one talk through verl: each reply is generated by verl's
    server manager from the talk's token sequence, grown with verl's Continuous
    Token helpers (the user's turns masked 0, the replies 1)."""

    max_concurrency = 1

    def __init__(self, loop: AgentLoopBase, sampling_params: dict[str, Any], response_length: int):
        super().__init__()
        self.name = "verl-policy"
        self.agent = loop
        self.sampling_params = sampling_params
        self.response_length = response_length
        self.request_id = uuid.uuid4().hex
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.logprobs: list[float] = []
        self.prompt_length = 0
        self.messages: list[Message] | None = None
        self.turns = 0

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        messages = request.message_dicts
        if self.messages is None:
            self.ids = await self.agent.ct_build_initial_tokens(messages)
            self.prompt_length = len(self.ids)
        else:
            merged, mask, logprobs = await self.agent.ct_merge_context_msg(
                self.messages, messages, self.ids, self.mask, self.logprobs or None
            )
            self.ids, self.mask = merged.token_ids, mask
            self.logprobs = logprobs or []
            if len(self.mask) >= self.response_length:
                raise ResponseFull
        out = await self.agent.server_manager.generate(
            request_id=self.request_id, prompt_ids=self.ids, sampling_params=self.sampling_params
        )
        merged, mask, logprobs = await self.agent.ct_merge_assistant_token(
            self.ids,
            out.token_ids,
            self.mask,
            self.logprobs if (self.logprobs or out.log_probs) else None,
            assistant_logprobs=out.log_probs or None,
        )
        self.ids, self.mask = merged.token_ids, mask
        self.logprobs = logprobs or []
        self.turns += 1
        text = self.agent.tokenizer.decode(out.token_ids, skip_special_tokens=True)
        self.messages = [*messages, {"role": "assistant", "content": text}]
        return [
            Completion(
                text=text,
                prompt_tokens=len(self.ids) - len(out.token_ids),
                completion_tokens=len(out.token_ids),
                sample_index=request.sample_start,
                finish_reason="stop",
            )
        ]


@register(AGENT_NAME)
class TalkAgentLoop(AgentLoopBase):
    """One talk with a simulated user per sample (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any):
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in TalkLoopSettings.model_fields}
        kwargs.pop("name", None)
        super().__init__(*args, **kwargs)
        if "simulator" not in fields:
            raise ValueError(
                f"the {AGENT_NAME!r} agent loop needs 'simulator' (a model spec) in its "
                "entry of actor_rollout_ref.rollout.agent.agent_loop_config_path"
            )
        self.settings = TalkLoopSettings.model_validate(plain(fields))
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        example, _ = example_from_extra_info(plain(kwargs.get("extra_info")))
        user = user_from_example(example)
        users, judge = await open_talk_models(self.settings)
        policy = VerlTalkPolicy(self, dict(sampling_params), self.response_length)
        talk = Conversation(
            policy,
            TranscriptAssistant(list(plain(kwargs["raw_prompt"]))),
            users,
            ConverseSettings(
                policy=GenerationSettings(memory_mode="none"),
                simulator=self.settings.user,
                max_turns=self.settings.max_turns,
            ),
        )
        score, why = None, None
        try:
            dialogue = await talk.play(user, sample_index=uuid.uuid4().int % 2**31)
            score = await self._score(dialogue, user, judge)
        except ResponseFull:
            why = "response_length"
        except LLMError as exc:
            why = f"simulator: {type(exc).__name__}"
        return self._output(policy, score, why)

    async def _score(self, dialogue: Any, user: Any, judge: Any) -> DialogueScore:
        steps = max_assessments(self.settings.max_turns, assess_last_reply=True)
        score = score_dialogue(dialogue, steps=steps)
        if judge is None or score.unscorable:
            return score
        breakdowns = await judge_dialogue(judge, dialogue, user)
        return attach_turn_rewards(score, {b.reply_id: b for b in breakdowns}, dialogue)

    def _output(
        self, policy: VerlTalkPolicy, score: DialogueScore | None, why: str | None
    ) -> AgentLoopOutput:
        reward = None
        if score is not None:
            reward = trajectory_reward(score, turn_weight=self.settings.turn_weight)
            why = why or (score.reason if score.unscorable else None)
        n = self.response_length
        response = policy.ids[policy.prompt_length :]
        return AgentLoopOutput(
            prompt_ids=policy.ids[: policy.prompt_length],
            response_ids=response[:n],
            response_mask=policy.mask[:n],
            response_logprobs=policy.logprobs[:n] or None,
            reward_score=self.settings.fallback_score if reward is None else reward,
            num_turns=2 * policy.turns,
            metrics={},
            extra_fields={
                "unscorable": int(reward is None),
                "unscorable_reason": why or "",
                "final_emotion": -1
                if score is None or score.final_emotion is None
                else score.final_emotion,
                "assistant_turns": policy.turns,
            },
        )
