"""Scrub contact details and identifiers from user histories at import.

Real chat logs carry personal data that no empathy query needs: users paste
their e-mail signature, phone number and street address into letters and CVs.
:func:`scrub_text` replaces them with placeholders before anything else sees
the text (prompts, stage records, exports), and counts what it replaced:

==============  ==========================================================  ===============
kind            what                                                        placeholder
==============  ==========================================================  ===============
``email``       ``name@host.tld``                                           ``[EMAIL]``
``url``         web addresses with a path, query or fragment (a bare         ``[URL]``
                domain such as ``example.org`` is kept)
``address``     a house number followed by a street name and a street       ``[ADDRESS]``
                type (``500 NE Spanish River Blvd., Suite 30, Boca Raton,
                FL, 33431``), or a line that is a postal address without a
                number (``Wanfeng Second Village, Wulidian Street``)
``phone``       7 to 15 digits in phone layout (``+1 (561) 559-9768``,      ``[PHONE]``
                ``18302378068``, ``1-800-555-0142``); dates and ranges
                (``500-1000``) are not phones
``id_number``   long digit runs with separators that are not phones         ``[ID]``
                (national ids, ISBNs, card and account numbers), and one or
                two capitals followed by 7 to 9 digits (passport numbers)
==============  ==========================================================  ===============

Patterns, not a named-entity model: person names and place names are left
alone (see docs/building.md, "Personal data"), and a number that looks like a
phone number is scrubbed even when it is not one.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScrubKind = Literal["email", "url", "address", "phone", "id_number"]
SCRUB_KINDS: tuple[ScrubKind, ...] = ("email", "url", "address", "phone", "id_number")

PLACEHOLDERS: dict[str, str] = {
    "email": "[EMAIL]",
    "url": "[URL]",
    "address": "[ADDRESS]",
    "phone": "[PHONE]",
    "id_number": "[ID]",
}


class ScrubOptions(BaseModel):
    """Which kinds of personal data are replaced at import (all, by default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    kinds: list[ScrubKind] = Field(default_factory=lambda: list(SCRUB_KINDS))


_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_STREET_TYPES = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
    r"Place|Pl|Way|Terrace|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|"
    r"Crescent|Close|Alley|Row|Calle|Avenida|Rue|Straße|Strasse|Via|Carrer"
)
_CAP = r"[A-Z0-9][\w'.-]*"
# "500 NE Spanish River Blvd., Suite 30, Boca Raton, FL, 33431"
_NUMBERED_ADDRESS = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?\s+(?:{_CAP}\s+){{0,5}}(?:{_STREET_TYPES})\b\.?"
    r"(?:,?\s*(?:Suite|Ste|Apt|Apartment|Unit|Floor|Fl|#)\.?\s*[\w-]+)?"
    r"(?:,\s*[A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*){0,3})?"  # city
    r"(?:,?\s*[A-Z]{2})?(?:,?\s*\d{5}(?:-\d{4})?)?"
)
# a whole line that is an address: capitalised words, commas, ending in a street type
_ADDRESS_LINE = re.compile(
    rf"(?m)^[ \t]*(?:{_CAP}[ \t]+){{1,6}}(?:Village|Estate|Block|Building|Tower|Garden|"
    rf"Gardens|Compound)?,?[ \t]*(?:{_CAP}[ \t]+){{0,4}}(?:{_STREET_TYPES})\b\.?[ \t]*"
    r"(?:,[ \t]*[^\n]{0,60})?$"
)
# Chinese and Japanese postal addresses: admin units, then a road and a house number
# ("重庆市渝北区金龙路88号", "东京都港区芝公园4丁目2番8号")
_CJK_ADDRESS = re.compile(
    r"(?:[\u4e00-\u9fff]{1,6}?(?:省|市|区|県|都|府|县|镇|街道))*"
    r"[\u4e00-\u9fff\d]{1,8}?(?:路|街|巷|弄|大道|丁目|番地?)\d{1,5}(?:号|號|番|丁目)"
    r"(?:[\d\u4e00-\u9fff-]{0,8}?(?:号|號|室|楼|栋|單元|单元))?"
)
_PHONE = re.compile(
    r"(?<![A-Za-z0-9_/.-])"
    r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}"
    r"(?![A-Za-z0-9_/-])"
    r"|(?<![A-Za-z0-9_/.-])\+?\d{10,15}(?![A-Za-z0-9_/-])"
    r"|(?<![A-Za-z0-9_/.-])\(\d{3}\)\s?\d{3}[\s.-]?\d{4}(?![A-Za-z0-9_/-])"
)
_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_ID = re.compile(
    r"(?<![A-Za-z0-9_/])(?:[A-Z]{1,3}-?)?\d[\d-]{7,}\d(?![A-Za-z0-9_/])"
    r"|(?<![A-Za-z0-9_/])[A-Z]{1,2}\d{7,9}(?![A-Za-z0-9_/])"
)


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _phone_like(match: str) -> bool:
    stripped = match.strip()
    if _DATE.match(stripped):
        return False
    n = _digits(stripped)
    if not 7 <= n <= 15:
        return False
    groups = re.split(r"[\s.()-]+", stripped.lstrip("+"))
    groups = [g for g in groups if g]
    if len(groups) == 1:  # one run of digits: only long runs are phones (or ids)
        return n >= 10
    if stripped.startswith(("+", "(")):
        return True
    # plain grouped digits: three or four groups ending in four digits (1-800-555-0142,
    # 030 1234 5678); two groups are more often a range ("500-1000") than a phone
    return n >= 10 or (len(groups[-1]) == 4 and 3 <= len(groups) <= 4)


def scrub_text(
    text: str, kinds: list[str] | tuple[str, ...] = SCRUB_KINDS
) -> tuple[str, Counter[str]]:
    """``text`` with personal data replaced by placeholders, and counts per kind.

    >>> scrub_text("Write to care4kids@gmail.com or call +1 (561) 555-0142.")[0]
    'Write to [EMAIL] or call [PHONE].'
    >>> scrub_text("Seen on 2024-03-06, in 2023 I moved.")[0]
    'Seen on 2024-03-06, in 2023 I moved.'
    """
    counts: Counter[str] = Counter()

    def sub(kind: str, pattern: re.Pattern[str], body: str, keep=None) -> str:
        if kind not in kinds:
            return body

        def repl(m: re.Match[str]) -> str:
            if keep is not None and keep(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(repl, body)

    out = sub("email", _EMAIL, text)
    out = sub("url", _URL, out, keep=_bare_domain)
    out = sub("address", _NUMBERED_ADDRESS, out)
    out = sub("address", _ADDRESS_LINE, out)
    out = sub("address", _CJK_ADDRESS, out)
    out = sub("phone", _PHONE, out, keep=lambda s: not _phone_like(s))
    out = sub("id_number", _ID, out, keep=lambda s: _DATE.match(s) is not None)
    return out, counts


def _bare_domain(url: str) -> bool:
    """True for ``https://example.org`` or ``www.example.org/`` (nothing identifying)."""
    body = re.sub(r"^(?:https?://)?", "", url, flags=re.IGNORECASE).rstrip(".,;:!?")
    host, _, rest = body.partition("/")
    return not rest.strip("/") and "?" not in host and "#" not in host
