"""The simulated judge: answers every judge prompt in the format it asks for.

:class:`RealisticJudge` is a responder for the simulated server
(:mod:`attunement.perf.simserver`) or a scripted model. It learns which
prompt a request comes from by the prompt's *name*
(:mod:`attunement.perf.prompt_names` traces the messages back to their
template file), never by phrases copied from the prompts, so rewording a
prompt file does not change what it answers. A request from a prompt it does
not know is an error, not a made-up answer.

It answers with realistic lengths: a criteria list of ``criteria_items``
weighted items of about ``item_tokens`` tokens, an analysis of about
``*_analysis_tokens`` tokens, a score line, a bystander assessment with five
sub-score lines. So every answer parses and the token counts mean something.
The lengths are options: the shared-versus-inline saving depends on them.

Its 1-5 scores follow a stated model, so that criteria modes can be compared
on what they do to a GRPO group (:func:`attunement.perf.reward_bench.run_variance_bench`):
every reply has a latent quality ``q`` (uniform in [1.5, 4.5], a hash of its
text); each criteria set is a yardstick with its own offset ``b`` (uniform in
``[-criteria_spread, criteria_spread]``, a hash of the criteria text, so two
replies scored against the same criteria get the same offset); each sample
adds noise ``e`` (uniform in ``[-noise, noise]``); the score is
``clip(round(q + b + e), 1, 5)``. Inline criteria are written per sample, so
every inline score has its own ``b``. PERM's fixed rubric has ``b = 0``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from attunement.judging import named_criteria, named_in
from attunement.judging.parsing import BYSTANDER_PARTS
from attunement.perf.prompt_names import PromptIndex
from attunement.perf.synthetic import filler
from attunement.records import EMPATHY_DIMENSIONS

#: the judge prompts the simulated judge answers, and the kind of answer each asks for
ANSWER_KINDS: dict[str, str] = {
    **{f"perm_{d}": "rating" for d in EMPATHY_DIMENSIONS},
    "peregrm_write_or_score": "criteria_or_score",
    "peregrm_inline": "inline",
    "peregrm_score": "score",
    "judge_bystander": "bystander",
    "rlpa_continue": "continue",
    "rlpa_match": "match",
}

# the judged text and the given criteria, in the fences every judge prompt puts them in
_RESPONSE = re.compile(r"<response>\n(.*?)\n</response>", re.DOTALL)
_CRITERIA = re.compile(r"<criteria>\n(.*?)\n</criteria>", re.DOTALL)


@cache
def judge_prompts() -> PromptIndex:
    """The index of the prompts in :data:`ANSWER_KINDS` (built once per process)."""
    return PromptIndex.of(ANSWER_KINDS)


def _given_criteria(prompt: str) -> str:
    """The criteria a scoring prompt asks to score by: the named set when it shows
    several, else its one set ("" when it shows none)."""
    named = named_criteria(prompt)
    if named is not None:
        return named
    given = _CRITERIA.search(prompt)
    return given.group(1) if given else ""


def _unit(salt: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha256(salt.encode()).hexdigest()[:12], 16) / 16**12


def latent_quality(response: str) -> float:
    """The simulated judge's hidden quality of a reply, in [1.5, 4.5]."""
    return 1.5 + 3.0 * _unit("quality/" + response.strip())


@dataclass
class RealisticJudge:
    """A SimServer responder that answers each judge prompt in its own format.

    ``kinds`` counts the answers given by kind (``rating``, ``criteria``,
    ``inline``, ``score``, ``bystander``, ``continue``, ``match``).
    """

    criteria_spread: float = 0.75
    noise: float = 0.5
    criteria_items: int = 5
    item_tokens: int = 34
    inline_analysis_tokens: int = 85  # "three to five sentences"
    score_analysis_tokens: int = 50  # "two or three sentences"
    reason_tokens: int = 50  # PERM: "a short justification"
    assessment_tokens: int = 40
    part_tokens: int = 12
    kinds: dict[str, int] = field(default_factory=dict)

    def __call__(self, messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        name = judge_prompts().identify(messages)
        if name is None:
            raise ValueError(
                "the simulated judge answers the prompts "
                f"{sorted(ANSWER_KINDS)}; this request came from none of them"
            )
        kind = ANSWER_KINDS[name]
        prompt = str(messages[-1].get("content", ""))
        if kind == "criteria_or_score":  # PereGRM's one prompt: its last line says which
            kind = "score" if named_in(prompt) else "criteria"
        salt = hashlib.sha256(f"{prompt}|{index}|{params.get('seed')}".encode()).hexdigest()
        answers: dict[str, Callable[[str, str, bool], str]] = {
            "rating": self._rating_answer,
            "criteria": self._criteria_answer,
            "inline": self._inline_answer,
            "score": self._score_answer,
            "bystander": self._bystander_answer,
            "continue": self._continue_answer,
            "match": self._match_answer,
        }
        text = answers[kind](prompt, salt, params.get("response_format") is not None)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return text

    # ------------------------------------------------------------------ the score model

    def _rating(self, prompt: str, salt: str, yardstick: str | None) -> int:
        """``clip(round(q + b + e), 1, 5)``: see the module docstring."""
        reply = _RESPONSE.search(prompt)
        q = latent_quality(reply.group(1)) if reply else 3.0
        b = (
            0.0
            if yardstick is None
            else self.criteria_spread * (2 * _unit("criteria/" + yardstick) - 1)
        )
        e = self.noise * (2 * _unit("noise/" + salt) - 1)
        return max(1, min(5, round(q + b + e)))

    def _criteria(self, salt: str, *, weighted: bool, as_json: bool) -> Any:
        n = self.criteria_items
        weights = [100 // n + (1 if i < 100 % n else 0) for i in range(n)]
        items = []
        for i in range(n):
            name = f"Criterion {i + 1}"
            desc = filler(self.item_tokens - 6, f"{salt}/c{i}")
            items.append((name, weights[i], desc))
        if as_json:
            return [
                {"name": a, "weight": w, "description": d} if weighted else f"{a}: {d}"
                for a, w, d in items
            ]
        return "\n".join(
            f"{i + 1}. {a}" + (f" ({w}%)" if weighted else "") + f": {d}"
            for i, (a, w, d) in enumerate(items)
        )

    # ------------------------------------------------------------------ one method per kind

    def _rating_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        score = self._rating(prompt, salt, yardstick=None)
        reason = filler(self.reason_tokens, salt + "/a")
        if as_json:
            return json.dumps({"reason": reason, "score": score})
        return f"Reason: {reason}\nScore: {score}"

    def _criteria_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        if as_json:
            return json.dumps({"criteria": self._criteria(salt, weighted=True, as_json=True)})
        return "Specific Criteria:\n" + self._criteria(salt, weighted=True, as_json=False)

    def _inline_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        score = self._rating(prompt, salt, yardstick=salt)  # criteria written per sample
        analysis = filler(self.inline_analysis_tokens, salt + "/a")
        if as_json:
            criteria = self._criteria(salt, weighted=False, as_json=True)
            return json.dumps({"criteria": criteria, "analysis": analysis, "score": score})
        return (
            "Specific Criteria:\n"
            + self._criteria(salt, weighted=False, as_json=False)
            + f"\nAnalysis: {analysis}\nScores: \\boxed{{{score}}}"
        )

    def _score_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        score = self._rating(prompt, salt, yardstick=_given_criteria(prompt))
        analysis = filler(self.score_analysis_tokens, salt + "/a")
        if as_json:
            return json.dumps({"analysis": analysis, "score": score})
        return f"Analysis: {analysis}\nScores: \\boxed{{{score}}}"

    def _bystander_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        parts = {key: 10 + self._part(f"{salt}/{key}") for key, _, _ in BYSTANDER_PARTS}
        assessment = filler(self.assessment_tokens, salt + "/b")
        if as_json:
            return json.dumps({"assessment": assessment, **parts})
        lines = [f"Assessment: {assessment}"]
        lines += [
            f"{label}: {parts[key]} / 20 - {filler(self.part_tokens, salt + key)}"
            for key, label, _ in BYSTANDER_PARTS
        ]
        lines.append(f"Total Score: {sum(parts.values())} / 100")
        return "\n".join(lines)

    @staticmethod
    def _part(salt: str) -> int:
        """A bystander sub-score offset in 0..8."""
        return int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % 9

    def _continue_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        """RLPA: the simulated user's decision to go on."""
        go_on = self._rating(prompt, salt, yardstick=None) >= 3
        reason = filler(self.reason_tokens // 2, salt + "/a")
        if as_json:
            return json.dumps({"reason": reason, "continue": go_on})
        return f"Reason: {reason}\nDecision: {'continue' if go_on else 'stop'}"

    def _match_answer(self, prompt: str, salt: str, as_json: bool) -> str:
        """RLPA: the reply's fit to the user's profile, in [0, 1]."""
        match = (self._rating(prompt, salt, yardstick=None) - 1) / 4
        reason = filler(self.reason_tokens // 2, salt + "/a")
        if as_json:
            return json.dumps({"reason": reason, "match": match})
        return f"Reason: {reason}\nMatch: {match:g}"
