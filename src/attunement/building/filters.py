"""Stage 1: keep users whose memories show personal, emotional or social depth.

The rules are data, not code: :class:`FilterRules` holds them with defaults,
and a JSON file with any subset of its fields overrides them
(``attune build --filter-rules my_rules.json``; ``attune build
--show-filter-rules`` prints the defaults to start from).

A memory item counts as *deep* when any of these holds:

1. its label starts with one of ``deep_label_prefixes``
   (e.g. ``Social_Relationships/``, ``States_Experiences/Mental_State``);
2. it is unlabelled or ``UNMAPPED`` and one of ``keywords`` occurs in its label
   suggestion or value: ``friend`` matches the word ``friend`` or ``friends``
   (not ``friendly``); a trailing ``*`` matches any word starting so
   (``anxi*`` matches ``anxious`` and ``anxiety``); a keyword may hold spaces
   (``passed away``); case is ignored and underscores count as spaces;
3. ``count_annotated_emotion`` is on and the item carries an ``emotion``.

A user is kept when at least ``min_deep_memories`` items are deep and, if the
history has ranked intents and ``require_intent_match`` is on, at least one
intent contains an entry of ``intent_allowlist``. Every rejection says which
rule failed and what was found.

Two presets (:data:`FILTER_PRESETS`, ``attune build --filter-rules NAME``):
``default`` (the rules above) and ``authors``, the rules of the PersonaEmp
authors' filter script: one deep memory suffices; their label prefixes (which
include ``Possessions`` and every ``Social_Relationships`` and
``States_Experiences`` label, but not ``Personal_Background/Family`` or goals);
for ``UNMAPPED`` items only the label suggestion is searched, by plain
substring (``care`` matches ``career``); no emotion rule; their intent
allowlist.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.reading import settings_file
from attunement.building.taxonomy import UNMAPPED
from attunement.records import MemoryItem, UserHistory

FilterPreset = Literal["default", "authors"]
FILTER_PRESETS: tuple[str, ...] = get_args(FilterPreset)
KeywordField = Literal["label_suggestion", "value"]


class FilterRules(BaseModel):
    """The editable rules of the depth filter (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    keyword_match: Literal["word", "substring"] = Field(
        default="word",
        description="word: whole words (with * for prefixes); substring: "
        "anywhere in the text, as the authors' script does",
    )
    keyword_fields: list[KeywordField] = Field(
        default_factory=lambda: ["label_suggestion", "value"],
        description="fields of an unlabelled or UNMAPPED item searched for keywords",
    )

    deep_label_prefixes: list[str] = Field(
        default_factory=lambda: [
            "Social_Relationships/",
            "States_Experiences/",
            "Personal_Background/Family",
            "Thoughts/Opinions/",
            "Thoughts/Goals/",
            "Constraints_and_Boundaries/Sensitive_Topics",
        ]
    )
    keywords: list[str] = Field(
        default_factory=lambda: [
            # relationships
            "friend",
            "friendship",
            "family",
            "mother",
            "father",
            "parent*",
            "sister",
            "brother",
            "sibling*",
            "cousin",
            "child",
            "children",
            "son",
            "daughter",
            "wife",
            "husband",
            "partner",
            "girlfriend",
            "boyfriend",
            "marriage",
            "married",
            "divorc*",
            "relationship*",
            "colleague",
            "manager",
            "boss",
            "coworker",
            "neighbo*",
            "roommate",
            "wedding",
            # feelings and hard moments
            "emotion*",
            "feel*",
            "upset",
            "sad*",
            "grief",
            "griev*",
            "loss",
            "lonel*",
            "isolat*",
            "anxi*",
            "stress*",
            "worr*",
            "fear*",
            "afraid",
            "panic*",
            "depress*",
            "frustrat*",
            "anger",
            "angry",
            "guilt*",
            "shame*",
            "regret*",
            "hurt*",
            "trauma*",
            "distress*",
            "overwhelm*",
            "burnout",
            "conflict*",
            "tension",
            "argument*",
            "betray*",
            "trust",
            "reject*",
            "bully*",
            "bullied",
            "abuse*",
            "racis*",
            "discriminat*",
            "insecur*",
            "self-esteem",
            "confidence",
            "shy",
            "struggl*",
            "cope",
            "coping",
            "hope*",
            "proud",
            "pride",
            "mental",
            "therap*",
            "counsel*",
            # life events and values
            "relocat*",
            "migrat*",
            "immigra*",
            "transition*",
            "exam",
            "exams",
            "illness",
            "diagnos*",
            "death",
            "died",
            "passed away",
            "funeral",
            "identity",
            "belief*",
            "values",
            "boundar*",
            "sensitive",
        ]
    )
    count_annotated_emotion: bool = True
    min_deep_memories: int = Field(default=2, ge=1)
    intent_allowlist: list[str] = Field(
        default_factory=lambda: [
            "Personal Advice",
            "Emotional",
            "Decision Support",
            "Career Advice",
            "Conversational Engagement",
            "Reflection",
            "Existential",
            "Moral",
            "Ethical",
            "Relationship",
            "Social",
            "Philosophical",
        ]
    )
    require_intent_match: bool = True

    @classmethod
    def preset(cls, name: str) -> FilterRules:
        """The rules of a named preset (see the module docstring)."""
        if name == "default":
            return cls()
        if name == "authors":
            return cls(**AUTHORS_RULES)
        raise ValueError(
            f"unknown filter preset {name!r}; choose from "
            f"{', '.join(FILTER_PRESETS)} or give a JSON file"
        )

    @classmethod
    def load(cls, spec: str | Path) -> FilterRules:
        """A preset name or a JSON file of rule fields."""
        if str(spec) in FILTER_PRESETS:
            return cls.preset(str(spec))
        return cls.from_file(spec)

    @classmethod
    def from_file(cls, path: str | Path) -> FilterRules:
        """Defaults overridden by the fields of a JSON file."""
        return settings_file(cls, path, "filter rules")

    @property
    def version(self) -> str:
        blob = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @cached_property
    def _keyword_re(self) -> re.Pattern[str]:
        parts = []
        words = sorted(
            {k.strip().lower() for k in self.keywords if k.strip()}, key=len, reverse=True
        )
        if self.keyword_match == "substring":
            if not words:
                return re.compile(r"(?!x)x")
            return re.compile("|".join(re.escape(w.rstrip("*")) for w in words), re.IGNORECASE)
        for kw in words:
            if kw.endswith("*"):
                parts.append(re.escape(kw[:-1]) + r"\w*")
            else:
                parts.append(re.escape(kw) + r"(?:e?s)?(?!\w)")
        if not parts:
            return re.compile(r"(?!x)x")
        return re.compile(r"(?<!\w)(?:" + "|".join(parts) + ")", re.IGNORECASE)

    def why_deep(self, item: MemoryItem) -> str | None:
        """The rule that makes ``item`` deep, or None."""
        label = (item.label or "").strip()
        if label and label != UNMAPPED:
            for prefix in self.deep_label_prefixes:
                if label.lower().startswith(prefix.lower()):
                    return f"label {label}"
        else:
            fields = {"label_suggestion": item.label_suggestion, "value": item.value}
            text = " ".join(v for k in self.keyword_fields if (v := fields[k]))
            if self.keyword_match == "word":
                text = text.replace("_", " ")
            m = self._keyword_re.search(text)
            if m:
                return f"keyword '{m.group(0).lower()}'"
        if self.count_annotated_emotion and item.emotion:
            return f"emotion '{item.emotion}'"
        return None


class FilterDecision(BaseModel):
    """The outcome of the filter for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    keep: bool
    reason_code: str | None = None
    reason: str
    deep_memory_ids: list[str] = Field(default_factory=list)


def filter_user(user: UserHistory, rules: FilterRules) -> FilterDecision:
    """Apply the rules to one user; the reason names what was found either way."""
    deep = [(m.memory_id, why) for m in user.memories if (why := rules.why_deep(m))]
    ids = [mid for mid, _ in deep]
    found = ", ".join(f"{mid} ({why})" for mid, why in deep) or "none"
    if not user.memories:
        return _no_memories(user)
    if len(deep) < rules.min_deep_memories:
        return FilterDecision(
            user_id=user.user_id,
            keep=False,
            reason_code="filter.shallow_memories",
            reason=(
                f"{len(deep)} of {len(user.memories)} memory items show personal, emotional "
                f"or social depth (need {rules.min_deep_memories}); deep: {found}"
            ),
            deep_memory_ids=ids,
        )
    if user.intents and rules.require_intent_match:
        allow = [a.lower() for a in rules.intent_allowlist]
        if not any(a in intent.lower() for intent in user.intents for a in allow):
            return FilterDecision(
                user_id=user.user_id,
                keep=False,
                reason_code="filter.intents",
                reason=f"no ranked intent in the allowlist (intents: {'; '.join(user.intents)})",
                deep_memory_ids=ids,
            )
    return FilterDecision(
        user_id=user.user_id,
        keep=True,
        reason=f"{len(deep)} deep memory items: {found}",
        deep_memory_ids=ids,
    )


def _no_memories(user: UserHistory) -> FilterDecision:
    """The rejection of a user without memory items: none at all, or every one
    dropped at import for an annotator's ``[ERROR: ...]`` tag (said so)."""
    dropped = user.meta.get("dropped_memories") or []
    tags = [d.get("reason", "") for d in dropped if str(d.get("reason", "")).startswith("[ERROR")]
    if dropped and len(tags) == len(dropped):
        return FilterDecision(
            user_id=user.user_id,
            keep=False,
            reason_code="filter.error_tags_only",
            reason=(
                f"all {len(dropped)} memory items carry an annotator's [ERROR: ...] tag and "
                f"were dropped at import (--error-tags strip or keep uses them); first: {tags[0]}"
            ),
        )
    return FilterDecision(
        user_id=user.user_id,
        keep=False,
        reason_code="filter.no_memories",
        reason="the history has no memory items",
    )


#: the PersonaEmp authors' filter rules (their filter script's lists, as data)
AUTHORS_RULES: dict = {
    "deep_label_prefixes": [
        "Social_Relationships",
        "States_Experiences",
        "Personal_Background/Past_Experience",
        "Constraints_and_Boundaries/Disliked_Topics",
        "Constraints_and_Boundaries/Sensitive_Topics",
        "Thoughts/Opinions/Positive",
        "Thoughts/Opinions/Negative",
        "Possessions",
    ],
    "keyword_match": "substring",
    "keyword_fields": ["label_suggestion"],
    "keywords": [
        "interaction",
        "preferences",
        "preference",
        "assistance",
        "help",
        "communication",
        "support",
        "social",
        "personal",
        "feedback",
        "relationships",
        "relationship",
        "ethics",
        "ethical",
        "behavior",
        "needs",
        "advice",
        "psychology",
        "emotional",
        "mental",
        "conflict",
        "negotiation",
        "trust",
        "respect",
        "etiquette",
        "norms",
        "formality",
        "interpersonal",
        "conversation",
        "dialogue",
        "dialog",
        "dialogues",
        "collaboration",
        "collaborative",
        "leadership",
        "responsibility",
        "expectations",
        "boundaries",
        "boundary",
        "sensitive",
        "sensitivity",
        "care",
        "understanding",
        "listening",
        "team",
        "stress",
        "frustration",
        "confusion",
        "anxiety",
        "disapproval",
        "dissatisfaction",
        "limitation",
        "restriction",
        "exclusion",
        "loss",
        "difficulty",
        "uncertainty",
        "pain",
        "weakness",
        "warnings",
        "urgency",
        "delay",
        "error",
        "issues",
        "problem",
        "success",
        "achievement",
        "improvement",
        "goal",
        "progress",
        "strength",
        "desire",
        "seeking",
        "participation",
        "engagement",
        "development",
        "learning",
        "creativity",
        "passion",
        "inspiration",
        "cultural",
        "society",
        "morality",
        "values",
        "culture",
        "community",
        "family",
        "organizational",
        "legal",
        "policy",
        "regulations",
        "affection",
        "appreciation",
        "appropriate",
        "attentiveness",
        "caregiving",
        "caregiver",
        "compassion",
        "confidence",
        "counseling",
        "equality",
        "fairness",
        "gratitude",
        "guidance",
        "harmony",
        "honesty",
        "inclusivity",
        "kinship",
        "patience",
        "polite",
        "reciprocity",
        "respectful",
        "traditions",
        "adverse",
        "ambiguous",
        "ambiguity",
        "bullying",
        "conflicted",
        "damage",
        "doubt",
        "failure",
        "failures",
        "fear",
        "fears",
        "fatigue",
        "isolation",
        "melancholy",
        "mobbing",
        "nervous",
        "panic",
        "regret",
        "regrets",
        "solitary",
        "tension",
        "traumatic",
        "uncertain",
        "unclear",
        "unknown",
        "vague",
        "vulnerable",
        "accomplishments",
        "advance",
        "advancement",
        "aspirations",
        "desires",
        "growth",
        "hope",
        "hopes",
        "inspirational",
        "joy",
        "milestone",
        "milestones",
        "optimism",
        "positive",
        "praise",
        "strong",
        "victories",
    ],
    "count_annotated_emotion": False,
    "min_deep_memories": 1,
    "intent_allowlist": [
        "Learning Support",
        "Conversational Engagement",
        "Personal Advice",
        "Decision Support",
        "Business",
        "Career Advice",
        "Moral and Ethical Queries",
        "Reflection and Insight",
        "Existential Questions",
        "Societal and Cultural Inquiry",
        "Philosophical",
    ],
    "require_intent_match": True,
}
