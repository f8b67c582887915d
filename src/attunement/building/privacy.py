"""Scrub contact details and identifiers from user histories at import.

Real chat logs carry personal data that no empathy query needs: users paste
their e-mail signature, phone number, card number and street address into
letters and CVs. :func:`scrub_text` replaces them with placeholders before
anything else sees the text (prompts, stage records, exports), and counts what
it replaced. Where a maintained library knows a format, it decides:

==============  ==========================================================  ===============
kind            what                                                        placeholder
==============  ==========================================================  ===============
``email``       ``name@host.tld``                                           ``[EMAIL]``
``url``         web addresses with a path, query or fragment, with or       ``[URL]``
                without a scheme (``github.com/user/repo``,
                ``youtube.com/watch?v=...``), found by `urlextract`_ against
                its own copy of the IANA list of top-level domains (read
                once, never updated at run time); a bare domain such as
                ``example.org`` is kept
``address``     a house number with a street name and type in English       ``[ADDRESS]``
                (``500 NE Spanish River Blvd., Suite 30, Boca Raton, FL,
                33431``), French, Spanish, Italian and Portuguese (``27 rue
                de la Paix, 75002 Paris``, ``Calle Mayor 5, 28013 Madrid``)
                and German (``Hauptstraße 5, 10115 Berlin``); a line that is
                a postal address without a number; a Chinese or Japanese
                address down to the house number
``phone``       numbers `phonenumbers`_ (Google's libphonenumber) finds     ``[PHONE]``
                possible for the user's region (from their language) or
                valid for any region, international ones (``+34 612 345
                678``) always; dates, ranges (``500-1000``) and other
                numbers that merely have enough digits are kept; a
                seven-digit local number (``555-0142``) counts after a
                phone word (call, tel, ...) or when its last group starts
                with 0
``id_number``   card numbers that pass the Luhn check and IBANs that pass   ``[ID]``
                theirs (`python-stdnum`_), long digit runs with separators
                that are not phones (national ids, ISBNs, account
                numbers), and one or two capitals followed by 7 to 9
                digits (passport numbers)
==============  ==========================================================  ===============

Patterns, not a named-entity model: person names and place names are left
alone (declared in docs/building.md, "Personal data"), and a number that looks
like a phone number is scrubbed even when it is not one.

.. _urlextract: https://pypi.org/project/urlextract/
.. _phonenumbers: https://pypi.org/project/phonenumbers/
.. _python-stdnum: https://pypi.org/project/python-stdnum/
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field
from stdnum import iban, luhn
from urlextract import URLExtract

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
    region: str | None = Field(
        default=None,
        description="region whose phone formats come first (ISO 3166, e.g. GB); "
        "None: from each user's language",
    )


#: the region whose phone formats a user's language suggests first
REGION_OF_LANGUAGE = {
    "en": "US",
    "es": "ES",
    "fr": "FR",
    "de": "DE",
    "it": "IT",
    "pt": "BR",
    "nl": "NL",
    "pl": "PL",
    "tr": "TR",
    "vi": "VN",
    "id": "ID",
    "ms": "MY",
    "ro": "RO",
    "cs": "CZ",
    "sv": "SE",
    "da": "DK",
    "no": "NO",
    "fi": "FI",
    "hu": "HU",
    "ca": "ES",
    "tl": "PH",
    "ru": "RU",
    "uk": "UA",
    "bg": "BG",
    "sr": "RS",
    "kk": "KZ",
    "mn": "MN",
    "ar": "SA",
    "fa": "IR",
    "ur": "PK",
    "he": "IL",
    "el": "GR",
    "hi": "IN",
    "mr": "IN",
    "bn": "BD",
    "ta": "IN",
    "te": "IN",
    "gu": "IN",
    "pa": "IN",
    "th": "TH",
    "ka": "GE",
    "hy": "AM",
    "zh": "CN",
    "ja": "JP",
    "ko": "KR",
}


def region_of(language: str) -> str:
    """The phone region a language suggests (``US`` when unknown).

    >>> region_of("de"), region_of("zh-TW"), region_of("xx")
    ('DE', 'CN', 'US')
    """
    return REGION_OF_LANGUAGE.get(language.split("-")[0].lower(), "US")


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
_NAME = r"[A-ZÀ-ÝĀ-Ž][\w'’.-]*"
_CITY = r"[A-ZÀ-ÝĀ-Ž][\w'’-]*"
_POSTCODE_CITY = rf"(?:,?\s*\d{{4,5}}\s+{_CITY}(?:[ -]{_CITY}){{0,2}})?"
# Romance languages: "27 rue de la Paix, 75002 Paris", "Calle Mayor 5, 28013 Madrid"
_ROMANCE_TYPES = (
    r"rue|avenue|av\.|boulevard|bd|chemin|allée|impasse|place|quai|calle|c/|avenida|avda\.?|"
    r"paseo|plaza|carretera|via|viale|piazza|corso|largo|rua|travessa|praça|alameda"
)
_LINKS = r"(?:(?:de|del|de la|de los|des|du|la|le|les|l'|d'|da|do|dos|das|di|della|dei)\s*)*"
_ROMANCE_ADDRESS = re.compile(
    rf"\b\d{{1,5}}(?:\s?(?:bis|ter|[A-Za-z]))?,?\s+(?i:{_ROMANCE_TYPES})\s+{_LINKS}"
    rf"{_NAME}(?:\s+{_LINKS}{_NAME}){{0,3}}{_POSTCODE_CITY}"
    rf"|\b(?i:{_ROMANCE_TYPES})\s+{_LINKS}{_NAME}(?:\s+{_LINKS}{_NAME}){{0,3}},?\s+"
    rf"(?:n\.?º\s*)?\d{{1,5}}[A-Za-z]?\b{_POSTCODE_CITY}"
)
# German and Dutch: "Hauptstraße 5, 10115 Berlin", "Musterstr. 12a", "Kerkstraat 7"
_GERMANIC_ADDRESS = re.compile(
    rf"\b{_NAME}(?i:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|straat|laan|gracht)"
    rf"\s+\d{{1,5}}[a-z]?\b{_POSTCODE_CITY}"
)
# Chinese and Japanese postal addresses: admin units, then a road and a house number
# ("重庆市渝北区金龙路88号", "东京都港区芝公园4丁目2番8号")
_CJK_ADDRESS = re.compile(
    r"(?:[\u4e00-\u9fff]{1,6}?(?:省|市|区|県|都|府|县|镇|街道))*"
    r"[\u4e00-\u9fff\d]{1,8}?(?:路|街|巷|弄|大道|丁目|番地?)\d{1,5}(?:号|號|番|丁目)"
    r"(?:[\d\u4e00-\u9fff-]{0,8}?(?:号|號|室|楼|栋|單元|单元))?"
)
_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_ID = re.compile(
    r"(?<![A-Za-z0-9_/])(?:[A-Z]{1,3}-?)?\d[\d-]{7,}\d(?![A-Za-z0-9_/])"
    r"|(?<![A-Za-z0-9_/])[A-Z]{1,2}\d{7,9}(?![A-Za-z0-9_/])"
)
# 13 to 19 digits in groups (card numbers); IBANs: country, check digits, up to 30 more
_CARD = re.compile(r"(?<![A-Za-z0-9_-])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9_-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){10,30}(?![A-Za-z0-9])")
# what may be a phone number: digits with phone separators, 7 to 15 of them
_PHONE_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_/.-])\+?\(?\d[\d \t().-]{5,20}\d(?![A-Za-z0-9_/-])"
    r"|(?<![A-Za-z0-9_/.-])\+?\d{7,15}(?![A-Za-z0-9_/-])"
)
_PHONE_WORDS = re.compile(
    r"(?i:call|phone|tel|ring|text|mobile|cell|fax|number|whatsapp|telefono|teléfono|"
    r"llámame|téléphone|appelle|telefon|handy)\W{0,3}(?:\w+\W{1,3}){0,3}$"
    r"|(?:电话|手机|電話|телефон)\W{0,3}$"
)


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _groups(number: str) -> list[str]:
    return [g for g in re.split(r"[\s.()-]+", number.lstrip("+")) if g]


def _phone_layout(number: str, before: str) -> bool:
    """Whether the digits look like a phone number rather than a date, a range, a
    version or a count: the layout, and for seven digits the words before."""
    stripped = number.strip()
    n = _digits(stripped)
    if _DATE.match(stripped) or not 7 <= n <= 15:
        return False
    if stripped.startswith(("+", "(")):
        return True
    groups = _groups(stripped)
    if len(groups) == 1:  # one run of digits: only long runs are phones
        return n >= 10
    # a one-digit group only as a trunk prefix ("1-800-..."): not an ISBN or a version
    if any(len(g) == 1 for g in groups[1:]) or (len(groups[0]) == 1 and len(groups[1]) != 3):
        return False
    if n >= 10 or (len(groups[-1]) == 4 and 3 <= len(groups) <= 4):
        return True
    # "555-0142": a local number after a phone word, or with a group starting with 0
    # (a range such as "500-1000" has neither)
    local = [len(g) for g in groups] == [3, 4]
    return local and (groups[-1].startswith("0") or bool(_PHONE_WORDS.search(before)))


@lru_cache(maxsize=4096)
def _valid_somewhere(number: str, first: str) -> bool:
    """Whether libphonenumber calls ``number`` a valid number of ``first`` or of
    any other region it knows (each region's own formats)."""
    for region in (first, *sorted(phonenumbers.SUPPORTED_REGIONS - {first})):
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
    return False


def _phone(match: str, before: str, region: str) -> bool:
    """Whether a candidate is a phone number of ``region`` (possible there) or of
    any region (valid there); international numbers by their own country code."""
    if not _phone_layout(match, before):
        return False
    try:
        parsed = phonenumbers.parse(match, region)
    except phonenumbers.NumberParseException:
        return False
    if phonenumbers.is_possible_number(parsed):
        return True
    return not match.lstrip().startswith("+") and _valid_somewhere(match.strip(), region)


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _iban(match: str) -> bool:
    return iban.is_valid(match)


@lru_cache(maxsize=1)
def _url_extractor() -> Any:
    """urlextract with the TLD list of its own package data, never a downloaded one.

    By default urlextract reads a list it may have updated in a cache folder;
    an empty folder of our own as its cache makes it fall back to the list
    shipped in the package (the list is read here, once; nothing is fetched,
    and ``update()`` is never called).
    """
    with tempfile.TemporaryDirectory(prefix="attune-tlds-") as empty:
        return URLExtract(
            cache_dir=empty, cache_dns=False, extract_localhost=False, extract_email=False
        )


_URL_TAIL = "\u201d\u2019\"')]}>.,;:!?"


def _url_spans(text: str) -> list[tuple[int, int]]:
    """Spans of web addresses with a path, query or fragment (bare domains kept)."""
    spans = [(m.start(), m.end()) for m in _URL.finditer(text) if not _bare_domain(m.group(0))]
    for url, (start, end) in _url_extractor().find_urls(text, get_indices=True):
        while end > start and text[end - 1] in _URL_TAIL:
            end -= 1  # closing quotes and brackets belong to the sentence
        if not _bare_domain(url) and not any(a < end and start < b for a, b in spans):
            spans.append((start, end))
    return sorted(spans)


def _bare_domain(url: str) -> bool:
    """True for ``https://example.org`` or ``www.example.org/`` (nothing identifying)."""
    body = re.sub(r"^(?:https?://)?", "", url, flags=re.IGNORECASE).rstrip(".,;:!?")
    host, _, rest = body.partition("/")
    return not rest.strip("/") and "?" not in host and "#" not in host


class _Scrubber:
    """One text's replacements, pass by pass, with the counts per kind."""

    def __init__(self, text: str, kinds: Sequence[str], region: str):
        self.text = text
        self.kinds = kinds
        self.region = region
        self.counts: Counter[str] = Counter()

    def spans(self, kind: str, spans: Sequence[tuple[int, int]]) -> None:
        if kind not in self.kinds:
            return
        out, pos = [], 0
        for start, end in spans:
            out += [self.text[pos:start], PLACEHOLDERS[kind]]
            pos = end
            self.counts[kind] += 1
        self.text = "".join([*out, self.text[pos:]])

    def pattern(self, kind: str, pattern: re.Pattern[str], keep: Any = None) -> None:
        if kind not in self.kinds:
            return
        self.spans(
            kind,
            [
                (m.start(), m.end())
                for m in pattern.finditer(self.text)
                if keep is None or not keep(m)
            ],
        )


def scrub_text(
    text: str, kinds: Sequence[str] = SCRUB_KINDS, *, region: str = "US"
) -> tuple[str, Counter[str]]:
    """``text`` with personal data replaced by placeholders, and counts per kind;
    ``region`` is the phone region tried first (every region is tried).

    >>> scrub_text("Write to care4kids@gmail.com or call +1 (561) 555-0142.")[0]
    'Write to [EMAIL] or call [PHONE].'
    >>> scrub_text("Seen on 2024-03-06, in 2023 I moved.")[0]
    'Seen on 2024-03-06, in 2023 I moved.'
    """
    s = _Scrubber(text, kinds, region)
    s.pattern("email", _EMAIL)
    if "url" in kinds:
        s.spans("url", _url_spans(s.text))
    s.pattern("id_number", _IBAN, keep=lambda m: not _iban(m.group(0)))
    s.pattern("id_number", _CARD, keep=lambda m: not _card(m.group(0)))
    for pattern in (_NUMBERED_ADDRESS, _ROMANCE_ADDRESS, _GERMANIC_ADDRESS):
        s.pattern("address", pattern)
    s.pattern("address", _ADDRESS_LINE)
    s.pattern("address", _CJK_ADDRESS)
    s.pattern(
        "phone",
        _PHONE_CANDIDATE,
        keep=lambda m: not _phone(m.group(0), s.text[max(0, m.start() - 40) : m.start()], region),
    )
    s.pattern("id_number", _ID, keep=lambda m: _DATE.match(m.group(0)) is not None)
    return s.text, s.counts
