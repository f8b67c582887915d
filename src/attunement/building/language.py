"""Which language a user writes in, which language a text is in, and how long
a text is in any script.

**Detector.** `lingua <https://pypi.org/project/lingua-language-detector/>`_
(``lingua-language-detector``), made for short and mixed-language text: it
weighs character n-grams of one to five letters with rules for the scripts and
letters each language uses, so a single sentence is labelled reliably where a
bag-of-bytes model guesses. Its models ship inside the wheel (nothing is
downloaded); they are loaded lazily, for the languages of
:data:`DETECTED_LANGUAGES` only (about 0.5 GB in memory once the Latin-script
ones are loaded).

**The user's language is the language of their own words.** Real users paste
what they want help with: a letter to translate, a quote, code. So each user
turn is first stripped of pasted blocks (:func:`own_words`: fenced and
code-like lines, quoted spans and ``>`` lines, and a letter from its
salutation to its closing), then split into sentences, and each sentence with
enough letters is labelled. A turn *counts for* each language that holds
enough of its letters. The user's language is the one that the most turns
count for; a tie goes to the language with fewer letters in all, since pasted
documents are long and the words addressed to the assistant short. So a user
who writes every instruction in Russian and pastes an English letter into the
same turn is Russian, and a Spanish speaker who pastes an English letter stays
Spanish. When no turn has a confident sentence, the script of the text decides
for non-Latin scripts (:func:`guess_script`), else the default.

**Length.** Chinese, Japanese and Thai do not separate words with spaces, so
"at least 5 words" must not mean "at least 4 spaces". :func:`text_units`
counts words in spaced scripts, one unit per Han, kana or Hangul character,
and one per three characters of Thai, Lao, Khmer or Myanmar (whose letters
are closer to sounds than to words).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LANGUAGE_NAMES = {
    "af": "Afrikaans",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "bs": "Bosnian",
    "ca": "Catalan",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "ga": "Irish",
    "gl": "Galician",
    "gu": "Gujarati",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "is": "Icelandic",
    "it": "Italian",
    "ja": "Japanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "km": "Khmer",
    "kn": "Kannada",
    "ko": "Korean",
    "ky": "Kyrgyz",
    "la": "Latin",
    "lo": "Lao",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mn": "Mongolian",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "ne": "Nepali",
    "nl": "Dutch",
    "no": "Norwegian",
    "nn": "Norwegian Nynorsk",
    "pa": "Punjabi",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sq": "Albanian",
    "sr": "Serbian",
    "sv": "Swedish",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "tg": "Tajik",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "yue": "Cantonese",
    "wuu": "Wu Chinese",
    "zh": "Chinese",
}

_NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}


def language_name(code: str) -> str:
    """English name of an ISO 639 code (the code itself when unknown).

    >>> language_name("es"), language_name("zh-TW"), language_name("xx")
    ('Spanish', 'Chinese', 'xx')
    """
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)


def language_code(label: str) -> str | None:
    """An ISO code for a label that is a code or an English language name.

    >>> language_code("Spanish"), language_code("ZH"), language_code("Klingon")
    ('es', 'zh', None)
    """
    text = label.strip().lower()
    if text in LANGUAGE_NAMES:
        return text
    base = text.split("-")[0]
    if base in LANGUAGE_NAMES:
        return base
    return _NAME_TO_CODE.get(text)


# --------------------------------------------------------------------------- scripts

_SCRIPTS = (
    ((0x3040, 0x30FF), "ja"),
    ((0x4E00, 0x9FFF), "zh"),
    ((0x3400, 0x4DBF), "zh"),
    ((0xAC00, 0xD7AF), "ko"),
    ((0x1100, 0x11FF), "ko"),
    ((0x0400, 0x04FF), "ru"),
    ((0x0600, 0x06FF), "ar"),
    ((0x0590, 0x05FF), "he"),
    ((0x0370, 0x03FF), "el"),
    ((0x0900, 0x097F), "hi"),
    ((0x0E00, 0x0E7F), "th"),
)


def guess_script(texts: Iterable[str], default: str) -> str:
    """A script-only guess: non-Latin scripts name their usual language, else ``default``."""
    counts: dict[str, int] = {}
    letters = 0
    for text in texts:
        for ch in text:
            if not ch.isalpha():
                continue
            letters += 1
            o = ord(ch)
            for (lo, hi), lang in _SCRIPTS:
                if lo <= o <= hi:
                    counts[lang] = counts.get(lang, 0) + 1
                    break
    if not counts:
        return default
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    if lang == "zh" and counts.get("ja", 0) > 0:
        lang = "ja"  # kana alongside kanji means Japanese
    return lang if n >= 0.3 * letters else default


# --------------------------------------------------------------------------- detector

#: the languages the detector chooses among (ISO 639-1): the widely written
#: languages lingua knows; a narrower set is both faster and more accurate
DETECTED_LANGUAGES: tuple[str, ...] = (
    *("en", "es", "fr", "de", "it", "pt", "nl", "pl", "tr", "vi", "id", "ms", "ro", "cs"),
    *("sv", "da", "nb", "fi", "hu", "ca", "tl", "ru", "uk", "bg", "sr", "kk", "mn", "ar"),
    *("fa", "ur", "he", "el", "hi", "mr", "bn", "ta", "te", "gu", "pa", "th", "ka", "hy"),
    *("zh", "ja", "ko"),
)
# lingua's codes that are written variants of another code
_ALIASES = {"nb": "no", "nn": "no"}

_DETECTOR: Any = None
_LOCK = threading.Lock()


def _detector() -> Any:
    global _DETECTOR
    with _LOCK:
        if _DETECTOR is None:
            try:
                from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
            except ImportError as exc:
                raise RuntimeError(
                    "identifying languages needs the lingua-language-detector package: "
                    "pip install 'attunement[build]'"
                ) from exc
            languages = [
                Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
                for code in DETECTED_LANGUAGES
            ]
            _DETECTOR = LanguageDetectorBuilder.from_languages(*languages).build()
    return _DETECTOR


def _code(language: Any) -> str:
    code = language.iso_code_639_1.name.lower()
    return _ALIASES.get(code, code)


def detect_text_language(text: str) -> tuple[str, float]:
    """(code, confidence) of one text; ``("und", 0.0)`` when nothing can be said."""
    values = _detector().compute_language_confidence_values(text[:2000])
    if not values or values[0].value <= 0:
        return "und", 0.0
    return _code(values[0].language), float(values[0].value)


# --------------------------------------------------------------------------- own words

_FENCED = re.compile(r"```.*?(?:```|$)|~~~.*?(?:~~~|$)", re.DOTALL)
_QUOTED_LINE = re.compile(r"(?m)^[ \t]*>.*$")
_QUOTED = re.compile(
    r"\u201c[^\u201d]{3,}\u201d|\u201e[^\u201c\u201d]{3,}[\u201c\u201d]|\u00ab[^\u00bb]{3,}\u00bb"
    r"|\u300c[^\u300d]{2,}\u300d|\u300e[^\u300f]{2,}\u300f"
    r"|(?<![\w\"])\"[^\"\n]{3,}\"(?![\w\"])|(?<![\w'])'[^'\n]{8,}?'(?![\w'])"
)
_CODE_START = re.compile(
    r"^\s*(?:(?:def|class|import|return|function|var|let|const|public|private|SELECT|INSERT|"
    r"UPDATE|CREATE)\b|from \S+ import\b|print\(|#include|<\?php|<[a-z]+[ >])"
)
_SALUTATION = re.compile(
    r"(?:^|(?<=[:\n])|(?<=[.!?] ))[ \t]*(?:Dear|To whom it may concern|Hi|Hello|Estimad[oa]s?|Querid[oa]s?|"
    r"Cher|Ch\u00e8re|Sehr geehrte[rn]?|Liebe[rn]?|Gentile|Caro|Cara|Prezad[oa]|"
    r"\u0423\u0432\u0430\u0436\u0430\u0435\u043c|\u0414\u043e\u0440\u043e\u0433|"
    r"\u5c0a\u656c\u7684|\u4eb2\u7231\u7684|\u62dd\u5553)"
    r"[^\n]{0,60}?[,:!\uff0c\uff1a]",
    re.IGNORECASE | re.MULTILINE,
)
_CLOSING = re.compile(
    r"(?:Sincerely|Best regards|Kind regards|Warm regards|Regards|Yours (?:truly|faithfully|"
    r"sincerely)|Best wishes|Atentamente|Saludos|Cordialement|Mit freundlichen Gr\u00fc\u00dfen|"
    r"Cordiali saluti|\u0421 \u0443\u0432\u0430\u0436\u0435\u043d\u0438\u0435\u043c|"
    r"\u6b64\u81f4|\u656c\u5177)[^\n]*(?:\n[^\n]{0,60}){0,3}",
    re.IGNORECASE,
)


def _code_like(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _CODE_START.match(stripped):
        return True
    symbols = sum(stripped.count(c) for c in "{}()[];=<>")
    return symbols >= 2 and symbols / len(stripped) >= 0.06


def _without_letters(text: str) -> str:
    """``text`` with every letter (salutation to closing) taken out."""
    out, pos = [], 0
    for m in _SALUTATION.finditer(text):
        if m.start() < pos:
            continue
        end = _CLOSING.search(text, m.end())
        out.append(text[pos : m.start()])
        pos = end.end() if end is not None else len(text)
        if end is None:
            break
    out.append(text[pos:])
    return "".join(out)


def own_words(text: str) -> str:
    """The user's own words in one turn: pasted blocks set aside.

    >>> own_words("Translate this please: Dear Mr. Smith, the parcel is late. Best regards, Ann")
    'Translate this please:'
    >>> own_words("She wrote: 'Muy bien, pero cuidado con los acentos'. Good or bad?")
    'She wrote:  . Good or bad?'
    """
    text = _FENCED.sub(" ", text)
    text = _QUOTED_LINE.sub(" ", text)
    text = _QUOTED.sub(" ", text)
    text = "\n".join(line for line in text.splitlines() if not _code_like(line))
    return _without_letters(text).strip()


_SENTENCES = re.compile(r"(?<=[.!?:\uff1a])\s+|\n+|(?<=[\u3002\uff01\uff1f\uff1a])")


def _letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def turn_languages(
    text: str, *, min_letters: int = 10, min_confidence: float = 0.5
) -> Counter[str]:
    """Letters of the user's own words in ``text`` per language, sentence by sentence."""
    found: Counter[str] = Counter()
    for sentence in _SENTENCES.split(own_words(text))[:40]:
        letters = _letters(sentence)
        if letters < min_letters:
            continue
        lang, conf = detect_text_language(sentence[:600])
        if lang != "und" and conf >= min_confidence:
            found[lang] += letters
    return found


@dataclass
class LanguageGuess:
    """The identified language and how it was decided (kept in the user's meta)."""

    language: str
    method: str  # "langid" (the detector), "script" or "default"
    votes: dict[str, float] = field(default_factory=dict)  # turns that count per language
    letters: dict[str, int] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "method": self.method,
            "detector": "lingua",
            "votes": dict(sorted(self.votes.items(), key=lambda kv: -kv[1])[:5]),
            "letters": dict(sorted(self.letters.items(), key=lambda kv: -kv[1])[:5]),
        }


def identify_language(
    texts: Iterable[str],
    default: str = "en",
    *,
    min_turn_letters: int = 12,
    max_turns: int = 60,
) -> LanguageGuess:
    """The language of a user's own turns (see the module docstring)."""
    texts = [t for t in texts if t and t.strip()]
    turns: Counter[str] = Counter()
    letters: Counter[str] = Counter()
    for text in texts[:max_turns]:
        found = turn_languages(text)
        for lang, n in found.items():
            if n >= min_turn_letters:
                turns[lang] += 1
                letters[lang] += n
    if turns:
        best = min(turns, key=lambda lang: (-turns[lang], letters[lang], lang))
        return LanguageGuess(best, "langid", dict(turns), dict(letters))
    script = guess_script(texts, default)
    return LanguageGuess(script, "script" if script != default else "default")


# --------------------------------------------------------------------------- length

_DENSE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_ABUGIDA = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")
_SPACED_WORD = re.compile(
    r"[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    r"\uac00-\ud7af\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]+"
)


def text_units(text: str) -> int:
    """The length of ``text`` in words, for any script.

    >>> text_units("I feel so alone tonight")
    5
    >>> text_units("我最近压力很大")
    7
    >>> text_units("ฉันรู้สึกเหงามาก")  # Thai, 16 characters
    6
    """
    dense = len(_DENSE.findall(text))
    abugida = len(_ABUGIDA.findall(text))
    spaced = len(_SPACED_WORD.findall(text))
    return spaced + dense + math.ceil(abugida / 3)
