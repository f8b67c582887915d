"""Simulated users built from PersonaEmp examples.

A PersonaEmp example already holds what a simulated user needs to be a
particular person rather than a generic one: a persona, the memories of a
long history, the situation behind the query and the query itself, in the
user's own words and language. :func:`user_from_example` turns it into a
:class:`~attunement.dialogue.records.SimulatedUser`:

- the query is the opening message;
- the simulator is given the persona, *every* memory and the situation,
  whatever the assistant is shown (the memory mode is the assistant's
  handicap, never the user's);
- the hidden need is what a person asking this kind of question wants from
  the talk, by category (:data:`HIDDEN_NEEDS`): comfort for Emotional
  Support, a reply that reads a delicate moment for High-EQ Interaction,
  usable help with people for Social Strategy. The simulator reads it right
  after the situation, so it is this user's need in these circumstances. The
  user never says it; a reply that meets it is what lifts their emotion.

An example without a category takes it from its situation; one with neither
cannot be a simulated user (the need would be a guess) and is refused with
its id before any model is called.
"""

from __future__ import annotations

from collections.abc import Iterable

from attunement.dialogue.records import SimulatedUser
from attunement.records import Category, Example

#: what a user of each category wants from the talk and does not say
HIDDEN_NEEDS: dict[Category, str] = {
    Category.ES: (
        "to feel that someone grasps what this is like for you and stays with the "
        "feeling before offering any fix"
    ),
    Category.HEQ: (
        "a reply that reads this moment the way you do and answers it with tact and "
        "warmth, without making it awkward or heavier"
    ),
    Category.SS: (
        "realistic help with the people involved: what you could actually say or do "
        "next that fits who you are"
    ),
}


def hidden_need(example: Example) -> str:
    """The need behind ``example``'s query, by its category (or its situation's).

    The simulator reads it right after the situation, so it applies to this
    user's circumstances; it is kept apart from them so that a message
    describing the situation is never mistaken for one revealing the need.

    >>> ex = Example(example_id="e1", query="I froze at the wake.", category="SS")
    >>> hidden_need(ex)
    'Realistic help with the people involved: what you could actually say or do next that fits who you are.'
    """
    category = example.category or (example.situation.category if example.situation else None)
    if category is None:
        raise ValueError(
            f"example {example.example_id!r} has no category (neither its own nor its "
            "situation's): the simulated user's hidden need is derived from it"
        )
    need = HIDDEN_NEEDS[Category.parse(category)]
    return f"{need[0].upper()}{need[1:]}."


def user_from_example(example: Example) -> SimulatedUser:
    """The simulated user of a PersonaEmp example (its query opens the talk)."""
    if example.dialogue:
        raise ValueError(
            f"example {example.example_id!r} is already a later turn of a dialogue; "
            "a simulated user starts from a single opening query"
        )
    return SimulatedUser(
        user_id=example.example_id,
        source="personaemp",
        language=example.language,
        opening=example.query,
        hidden_need=hidden_need(example),
        example=example,
    )


def users_from_examples(examples: Iterable[Example]) -> list[SimulatedUser]:
    """One simulated user per example; ids must be unique (dialogues join on them)."""
    users: list[SimulatedUser] = []
    seen: set[str] = set()
    for example in examples:
        if example.example_id in seen:
            raise ValueError(f"example id {example.example_id!r} appears twice")
        seen.add(example.example_id)
        users.append(user_from_example(example))
    return users
