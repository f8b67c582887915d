"""The simulated user's emotion: its scale, its levels and how a turn moves it.

These are SAGE's rules ("Sentient Agent as a Judge", Tencent, MIT), used for
every simulated user so that a number from a PersonaEmp user and a number from
a SAGE profile mean the same thing:

- the emotion is a whole number that starts at :data:`START_EMOTION` (40);
- after each assistant reply the simulator states a change; the change is
  clamped to ``[-CHANGE_LIMIT, +CHANGE_LIMIT]`` (10) and the emotion after it
  is capped at :data:`MAX_EMOTION` (100). SAGE has no floor, but none is ever
  reached: a talk ends below 10, so the lowest emotion after a change is 0;
  the floor here only makes that explicit;
- the level of an emotion is S at 100, A from 70, B from 40, C from 10 and F
  below 10. A talk ends when the user reaches S (fully helped) or F (gives
  up), or after :data:`MAX_USER_TURNS` user messages.

The functions are pure, so the loop, the scoring and the tests share one
definition of each rule.
"""

from __future__ import annotations

from typing import Literal, get_args

Level = Literal["S", "A", "B", "C", "F"]
LEVELS: tuple[Level, ...] = get_args(Level)

#: the emotion every simulated user starts a talk with (SAGE's ``emo_point``)
START_EMOTION = 40
#: the highest emotion; reaching it is success
MAX_EMOTION = 100
#: the lowest emotion a change can leave (never binding under SAGE's rules)
MIN_EMOTION = 0
#: the largest change one reply can cause, either way
CHANGE_LIMIT = 10
#: the lowest emotion of each level above F, best first (SAGE's ``emo_count``)
LEVEL_FLOORS: tuple[tuple[Level, int], ...] = (("S", 100), ("A", 70), ("B", 40), ("C", 10))
#: the talk ends after this many user messages (the opening one included)
MAX_USER_TURNS = 10


def level_of(emotion: int) -> Level:
    """The level of an emotion: the first floor it reaches, else F.

    >>> [level_of(e) for e in (100, 99, 70, 69, 40, 39, 10, 9, 0)]
    ['S', 'A', 'A', 'B', 'B', 'C', 'C', 'F', 'F']
    """
    for level, floor in LEVEL_FLOORS:
        if emotion >= floor:
            return level
    return "F"


def clamp_change(change: int, limit: int = CHANGE_LIMIT) -> int:
    """A stated change bounded to ``[-limit, limit]`` (SAGE clamps, it does not refuse).

    >>> clamp_change(25), clamp_change(-13), clamp_change(4)
    (10, -10, 4)
    """
    return max(-limit, min(limit, change))


def apply_change(emotion: int, change: int) -> int:
    """The emotion after a (clamped) change, capped at 100 and floored at 0.

    >>> apply_change(40, 7), apply_change(95, 10), apply_change(12, -30)
    (47, 100, 2)
    """
    return max(MIN_EMOTION, min(MAX_EMOTION, emotion + clamp_change(change)))


def ends_talk(level: Level) -> bool:
    """Whether reaching ``level`` ends the talk (S: helped, F: given up).

    >>> [ends_talk(level) for level in LEVELS]
    [True, False, False, False, True]
    """
    return level in ("S", "F")
