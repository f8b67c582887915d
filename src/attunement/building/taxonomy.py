"""The AlpsBench memory taxonomy, as far as the builder needs it.

Labels are ``Domain/Aspect[/Detail]`` paths. The list is used to constrain the
memory-extraction stage (an extracted item must carry one of these labels or
``UNMAPPED`` with a free-form ``label_suggestion``) and is the vocabulary the
filter rules are written in.
"""

from __future__ import annotations

UNMAPPED = "UNMAPPED"

TAXONOMY_LABELS: tuple[str, ...] = (
    "Personal_Background/Identity",
    "Personal_Background/Occupation",
    "Personal_Background/Education",
    "Personal_Background/Location",
    "Personal_Background/Family",
    "Social_Relationships/Family",
    "Social_Relationships/Friends",
    "Social_Relationships/Partners",
    "Social_Relationships/Colleagues",
    "States_Experiences/Mental_State",
    "States_Experiences/Physical_State",
    "States_Experiences/Past_Experience",
    "Thoughts/Goals/Long_Term",
    "Thoughts/Goals/Short_Term",
    "Thoughts/Opinions/Positive",
    "Thoughts/Opinions/Negative",
    "Thoughts/Curiosity",
    "Preferences/Food",
    "Preferences/Music",
    "Preferences/Entertainment",
    "Preferences/Sports",
    "Preferences/Reading",
    "Preferences/Shopping",
    "Preferences/Education",
    "Preferences/Interaction_Preferences",
    "Plans/Commitments",
    "Plans/Schedule",
    "Possessions/Important_Items",
    "Possessions/Pet",
    "Constraints_and_Boundaries/Sensitive_Topics",
    "Constraints_and_Boundaries/Disliked_Topics",
    "Constraints_and_Boundaries/Do_Not_Remember",
)
