"""Which language a user writes in, and how long a text is in any script.

**Language.** A user's language is identified from their own turns with
`py3langid <https://pypi.org/project/py3langid/>`_ (a naive Bayes model over
byte n-grams, 97 languages, shipped inside the package: nothing is downloaded).
Each user turn with enough letters is classified on its own and, when the
model is at least ``min_confidence`` sure, votes for its language with its
confidence, scaled down for turns shorter than ``full_vote_units`` words
(:func:`text_units`). A turn counts once however long it is, so one pasted
document does not outvote the user's own messages: a Spanish speaker who
pastes an English letter stays Spanish. When no turn is confident, the script of
the text decides for non-Latin scripts (:func:`guess_script`), else the
default.

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


# --------------------------------------------------------------------------- identification

_IDENTIFIER: Any = None
_LOCK = threading.Lock()


def _identifier() -> Any:
    global _IDENTIFIER
    with _LOCK:
        if _IDENTIFIER is None:
            try:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier
            except ImportError as exc:
                raise RuntimeError(
                    "identifying the users' language needs the py3langid package: "
                    "pip install 'attunement[build]'"
                ) from exc
            _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


# languages the model knows that are written variants of another code
_ALIASES = {"nn": "no", "wuu": "zh", "yue": "zh", "uzs": "uz"}


@dataclass
class LanguageGuess:
    """The identified language and how it was decided (kept in the user's meta)."""

    language: str
    method: str  # "langid", "script" or "default"
    votes: dict[str, float] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "method": self.method,
            "votes": {
                k: round(v, 2) for k, v in sorted(self.votes.items(), key=lambda kv: -kv[1])[:5]
            },
        }


def identify_language(
    texts: Iterable[str],
    default: str = "en",
    *,
    min_letters: int = 12,
    full_vote_units: int = 12,
    min_confidence: float = 0.5,
) -> LanguageGuess:
    """The language of a user's own turns (see the module docstring)."""
    texts = [t for t in texts if t and t.strip()]
    ident = _identifier()
    votes: dict[str, float] = {}
    for text in texts:
        sample = text[:2000]
        letters = sum(1 for ch in sample if ch.isalpha())
        if letters < min_letters:
            continue
        lang, conf = ident.classify(sample)
        if conf < min_confidence or lang == "zxx":
            continue
        lang = _ALIASES.get(lang, lang)
        weight = min(1.0, text_units(sample) / full_vote_units)
        votes[lang] = votes.get(lang, 0.0) + weight * conf
    if votes:
        return LanguageGuess(max(votes.items(), key=lambda kv: kv[1])[0], "langid", votes)
    script = guess_script(texts, default)
    return LanguageGuess(script, "script" if script != default else "default")


def detect_text_language(text: str) -> tuple[str, float]:
    """(code, confidence) of one text."""
    lang, conf = _identifier().classify(text[:2000])
    return _ALIASES.get(lang, lang), conf


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
