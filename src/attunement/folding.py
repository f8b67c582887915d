"""The one folding: text as a reader sees it, for comparing, never for showing.

A policy that wants a judge to read ``Score: 5`` or ``</response>`` in its
reply can write it in ways a byte comparison misses, and a judge that quotes
the reply back normalises it without being asked (curly quotes straightened, a
variation selector dropped, an entity decoded). Every comparison in
attunement that must see through this (the fence's tag matcher, the judge
parsers' copy detection, the verdict-in-reply detector, the hacking monitor,
the simulated user's leak check) folds both sides with :func:`fold`, so no
two of them disagree about what two texts are "the same".

Two strengths, one definition:

- :func:`readable`: what the judge parsers read: NFKC (fullwidth digits and
  colons become ASCII) and every default-ignorable code point removed (format
  characters, variation selectors, the combining grapheme joiner, Mongolian
  selectors, tags, fillers). Case, quotes and layout are kept, because the
  parsers quote what they read back in their reasons.
- :func:`fold`: :func:`readable`, plus HTML entities decoded, escaped slashes
  (``<\\/response>``) unescaped, look-alike letters (Cyrillic, Greek, small
  capitals) mapped to ASCII, case folded, quotes, dashes and ellipses folded
  to ASCII, and each run of whitespace collapsed to one space (a newline when
  it held one). :func:`fold_map` gives the same text with, for every folded
  character, the index of the character of the original it came from, so a
  match found in folded text can be cut out of the original.

Folding works on clusters (a base character and its combining marks), so
``e`` + U+0301 and the precomposed ``é`` fold alike.
"""

from __future__ import annotations

import html
import re
import unicodedata

#: default-ignorable code points (Unicode DerivedCoreProperties), which render as nothing
IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_IGNORABLE = re.compile(f"[{IGNORABLE}]")


def invisible(ch: str) -> bool:
    """Whether ``ch`` renders as nothing: default-ignorable or a format character (Cf).

    >>> invisible("\\ufe0f"), invisible("\\U000e0041"), invisible("\\u034f"), invisible("a")
    (True, True, True, False)
    """
    return bool(_IGNORABLE.match(ch)) or unicodedata.category(ch) == "Cf"


def readable(text: str) -> str:
    """NFKC, with every invisible code point (:func:`invisible`) removed.

    >>> readable("Sco\\ufe0fre\\u200b: \\uff14")
    'Score: 4'
    """
    text = "".join(ch for ch in text if not invisible(ch))
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if not invisible(ch))


# Look-alikes of ASCII letters that NFKC does not fold (Cyrillic, Greek, small capitals).
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys("аАⲁ", "a"),
        **dict.fromkeys("вВʙβΒ", "b"),
        **dict.fromkeys("сСϲᴄ", "c"),
        **dict.fromkeys("ԁᴅ", "d"),
        **dict.fromkeys("еЕεΕᴇ", "e"),
        **dict.fromkeys("ɢ", "g"),
        **dict.fromkeys("һНΗʜ", "h"),
        **dict.fromkeys("іІιΙɪıӏ", "i"),
        **dict.fromkeys("јЈᴊ", "j"),
        **dict.fromkeys("кКκΚᴋ", "k"),
        **dict.fromkeys("ʟ", "l"),
        **dict.fromkeys("мМΜᴍ", "m"),
        **dict.fromkeys("ΝɴпП", "n"),
        **dict.fromkeys("оОοΟᴏσ", "o"),
        **dict.fromkeys("рРρΡᴘ", "p"),
        **dict.fromkeys("ʀ", "r"),
        **dict.fromkeys("ѕЅꜱ", "s"),
        **dict.fromkeys("тТτΤᴛ", "t"),
        **dict.fromkeys("υᴜ", "u"),
        **dict.fromkeys("νᴠ", "v"),
        **dict.fromkeys("ԝᴡ", "w"),
        **dict.fromkeys("хХχΧ", "x"),
        **dict.fromkeys("уУΥʏ", "y"),
        **dict.fromkeys("Ζᴢ", "z"),
        # quotes, dashes and the minus sign as a reader reads them
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u00b4\u02bc\u0060", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58", "-"),
    }
)

#: what folds as one unit: an HTML entity, an escaped slash, or a character with
#: its combining marks
_UNIT = re.compile(
    r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,31});?|\\/|.[\u0300-\u036f]*", re.DOTALL
)


def _fold_unit(unit: str) -> str:
    if unit == "\\/":
        return "/"
    if unit.startswith("&"):
        decoded = html.unescape(unit)
        if decoded != unit:
            return "".join(_fold_unit(m.group(0)) for m in _UNIT.finditer(decoded))
    unit = "".join(ch for ch in unit if not invisible(ch))
    folded = unicodedata.normalize("NFKC", unit).translate(_CONFUSABLES).casefold()
    return "".join(ch for ch in folded if not invisible(ch)).translate(_CONFUSABLES)


def fold_map(text: str) -> tuple[str, list[int]]:
    """``(fold(text), origin)``: ``origin[i]`` is the index in ``text`` of the unit
    folded character ``i`` came from.

    >>> fold_map("A\\u200b&amp;B")
    ('a&b', [0, 2, 7])
    """
    out: list[str] = []
    origin: list[int] = []
    space: int | None = None  # where a pending run of whitespace started
    newline = False
    for m in _UNIT.finditer(text):
        for ch in _fold_unit(m.group(0)):
            if ch.isspace():
                space = m.start() if space is None else space
                newline = newline or ch in "\n\r\u2028\u2029\x0b\x0c\x85"
                continue
            if space is not None:
                if out:
                    out.append("\n" if newline else " ")
                    origin.append(space)
                space, newline = None, False
            out.append(ch)
            origin.append(m.start())
    return "".join(out), origin


def fold(text: str) -> str:
    """Text as a reader sees it (see the module docstring). Used to compare, never to show.

    >>> fold("Ｒеѕ\\u200bponse")
    'response'
    >>> fold("You\\u2019ve  got\\u2014this\\u2026 &lt;\\\\/resp\\ufe0fonse&gt;")
    "you've got-this... </response>"
    """
    return fold_map(text)[0]
