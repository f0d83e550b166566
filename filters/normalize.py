"""Text normalisation shared by the alias matcher and the n-gram output filter.

A text becomes a sequence of *tokens*: invisible characters dropped, Unicode NFKC, casefolded,
accents stripped, split on anything that is not a letter or digit (letters of scripts written
without spaces are tokens of their own), with leetspeak undone inside words that contain a
letter (``H5iao`` -> ``hsiao``; pure numbers such as ``1991`` are kept) and runs of single
letters merged, so "J. K. Rowling", "JK Rowling" and "j.k.rowling" all give ``jk rowling``.
Look-alike letters of any script that imitate Latin ones are mapped to Latin first
(:mod:`filters.confusables`, from Unicode's confusables table).
The digit ``1`` stands for ``i`` or ``l``: a token keeps both readings.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from anyascii import anyascii

from filters.confusables import deconfuse

# Scripts written without spaces between words (CJK ideographs, kana, Thai, Lao, Khmer,
# Myanmar): each of their letters is a token of its own, so a Latin name next to them ("作者是
# J.K.Rowling") is still a word of its own.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff"
             "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002ffff")
_UNSPACED_CHAR = re.compile(f"[{_UNSPACED}]")
_WORD = re.compile(f"(?:[^\\W_{_UNSPACED}]|[@$])+|[{_UNSPACED}]")
_LEET_LETTERS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_LEET = str.maketrans(_LEET_LETTERS)
_ROT13_LEET = str.maketrans({k: codecs.encode(v, "rot13") for k, v in _LEET_LETTERS.items()})


# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt): characters that
# render as nothing (zero-width spaces and joiners, soft hyphen, word joiner, invisible
# operators, bidi marks and overrides, BOM, variation selectors, tags, Hangul fillers), used to
# slip a name past a matcher: "Zor\u200bblax". They are dropped before anything else.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def unify(text: str) -> str:
    """Invisible characters dropped, NFKC, look-alike letters to Latin
    (:mod:`filters.confusables`); case kept."""
    if text.isascii():
        return text
    return deconfuse(unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)))


def _caseless(text: str) -> str:
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """:func:`unify`, then casefold and accents (combining marks) stripped."""
    return _caseless(unify(text))


def _clean_word(word: str) -> str:
    """Undo leetspeak in a word that contains a letter; drop stray ``@``/``$`` elsewhere."""
    word = word.lstrip("@")
    if any(c.isalpha() for c in word):
        return word.translate(_LEET)
    return word.replace("@", "").replace("$", "")


@lru_cache(maxsize=16384)
def transliterate(word: str) -> str | None:
    """A word of another script in ASCII letters (``anyascii``), when that differs."""
    if word.isascii():
        return None
    out = "".join(c for c in anyascii(word).casefold() if c.isalnum())
    return out if out and out != word else None


@dataclass(frozen=True)
class Token:
    """A normalised word, its ``1 -> l`` reading when it contains the digit 1, and ``extra``
    readings: its ASCII transliteration when it is written in another script, and its leet
    digits read as ROT13 letters ("O4o4o" in ROT13 is "B4b4b": ``4`` stands for ``n``)."""

    text: str
    alt: str | None = None
    extra: tuple[str, ...] = ()
    is_run: bool = False  # merged from a run of single letters ("J o h n" -> "john")

    def readings(self) -> tuple[str, ...]:
        """Every spelling this token may stand for."""
        if self.alt is None and not self.extra:
            return (self.text,)
        return (self.text, *(r for r in (self.alt, *self.extra) if r is not None))

    @property
    def is_single(self) -> bool:
        """A lone letter of a spaced script (a run of them may spell a word: "J K Rowling")."""
        return len(self.text) == 1 and self.text.isalpha() and not _UNSPACED_CHAR.match(self.text)


# Word boundaries no delimiter marks: a lower-case letter before a capital ("NameSure",
# "ZorblaxQuintavius"), and a Latin letter or digit next to a letter of another script once
# look-alikes are folded ("Quenbyпривет"). Both sides of a match are cut the same way, and
# the alias matcher joins tokens, so a cut never hides a name.
_CASE_CUT = re.compile(r"(?<=[a-z\u00df-\u00ff])(?=[A-Z\u00c0-\u00de])")
_SCRIPT_CUT = re.compile(r"(?<=[a-z0-9@$])(?=[^\W\d_])(?=[^\x00-\x7f])|(?<=[^\W\d_])(?<=[^\x00-\x7f])(?=[a-z0-9@$])")


def _words(text: str) -> list[str]:
    unified = unify(text)
    folded = _caseless(_CASE_CUT.sub(" ", unified) if not unified.islower() else unified)
    return [part for match in _WORD.finditer(folded)
            for part in (_SCRIPT_CUT.split(match.group()) if not match.group().isascii()
                         else (match.group(),))]


@lru_cache(maxsize=65536)
def _token(raw: str) -> Token | None:
    """The token of one folded word (tokens are immutable: one instance per word)."""
    if raw.isascii() and raw.isalpha():
        return Token(raw)
    word = _clean_word(raw)
    if not word:
        return None
    has_alt = "1" in raw and any(c.isalpha() for c in raw)
    alt = _clean_word(raw.replace("1", "l")) if has_alt else None
    extra = [transliterate(word)]
    if word != raw and raw.isascii() and any(c.isalpha() for c in raw):
        extra.append(raw.translate(_ROT13_LEET))
    elif raw.isdigit() and raw.isascii() and all(c in _LEET_LETTERS for c in raw):
        # a number that leetspeak can spell ("743" for "tae"): the number stays the token,
        # its letters are readings an alias may use, in plain and in ROT13
        extra += [raw.translate(_LEET), raw.translate(_ROT13_LEET)]
    return Token(word, alt, tuple(r for r in extra if r and r != word))


def raw_tokens(text: str) -> list[Token]:
    """The normalised words of ``text`` before one-letter runs are merged."""
    return [token for token in map(_token, _words(text)) if token is not None]


class TokenStream:
    """Merges one-letter runs across pieces of a stream; a trailing run waits for more text.

    ``starts`` lists, for each token returned so far, the ``at`` of the piece its first letter
    came in (a position at or before the token's start in the text)."""

    def __init__(self) -> None:
        self._run: list[Token] = []
        self._run_at = 0
        self.starts: list[int] = []

    def feed(self, tokens: list[Token], at: int = 0) -> list[Token]:
        """Merged tokens that are final; a trailing one-letter run is kept back."""
        out: list[Token] = []
        for token in tokens:
            if token.is_single:
                if not self._run:
                    self._run_at = at
                self._run.append(token)
                continue
            out.extend(self.flush())
            out.append(token)
            self.starts.append(at)
        return out

    def flush(self) -> list[Token]:
        """The pending one-letter run as one token (at the end of the text)."""
        if not self._run:
            return []
        merged = Token("".join(t.text for t in self._run), is_run=len(self._run) > 1)
        self._run = []
        self.starts.append(self._run_at)
        return [merged]


def tokenize(text: str) -> list[Token]:
    """The normalised tokens of a complete text (see the module docstring)."""
    stream = TokenStream()
    return stream.feed(raw_tokens(text)) + stream.flush()


def normalize(text: str) -> str:
    """The normalised tokens of ``text`` joined by single spaces."""
    return " ".join(t.text for t in tokenize(text))


_CUT_PUNCT = frozenset("!\"#%&'()*+,-./:;<=>?[\\]^`{|}~_")


@lru_cache(maxsize=4096)
def _ends_words(char: str) -> bool:
    """Whether no character after ``char`` can join a word before it: whitespace, punctuation,
    symbols and separators of any script whose folded form holds no word character (``@`` and
    ``$`` excluded: leetspeak; "™" excluded: it folds to "TM"), and letters of unspaced scripts
    (tokens of their own). Combining marks and format characters do not end a word."""
    if char.isspace() or char in _CUT_PUNCT or _UNSPACED_CHAR.match(char):
        return True
    if char in "@$" or unicodedata.category(char)[0] not in "PSZ":
        return False
    return _WORD.search(fold(char)) is None


def settled_end(text: str) -> int:
    """Where the part of a growing text that more characters cannot re-tokenise ends: just
    after the last character that ends words (:func:`_ends_words`)."""
    for index in range(len(text) - 1, -1, -1):
        if _ends_words(text[index]):
            return index + 1
    return 0


def _is_letter(char: str) -> bool:
    folded = fold(char)
    return len(folded) == 1 and folded.isalnum() and not _UNSPACED_CHAR.match(folded)


def run_start(text: str, end: int) -> int:
    """Where a trailing run of single letters ("J. K. ", "Z o r ") that ends at ``end``
    starts (``end`` when there is none): a run still being written may spell a word."""
    start, index, letters = end, end - 1, 0
    while index >= 0:
        char = text[index]
        if not fold(char):  # invisible: part of whatever surrounds it
            index -= 1
            continue
        if not _ends_words(char):
            word_start = index
            while word_start > 0 and not _ends_words(text[word_start - 1]):
                word_start -= 1
            if sum(_is_letter(c) for c in text[word_start : index + 1]) != 1:
                break
            letters += 1
            start, index = word_start, word_start - 1
            continue
        index -= 1
    return start if letters > 1 else end


def release_limit(text: str, hold_back_chars: int) -> int:
    """How much of a growing ``text`` a stream may release when a guard that reads settled
    tokens needs ``hold_back_chars`` of context: the settled part but its last
    ``hold_back_chars`` characters and any trailing run of single letters (:func:`run_start`),
    so text that never settles (no space, no punctuation) is never released before the guard
    has read it."""
    if not hold_back_chars:
        return len(text)
    settled = settled_end(text)
    return max(0, min(settled - hold_back_chars, run_start(text, settled)))


class TextFeed:
    """Turns successive prefixes of one text into newly final tokens (for stream scanners);
    ``starts[i]`` is a position at or before the start of the ``i``-th token in the text."""

    def __init__(self) -> None:
        self.seen = ""
        self._pos = 0
        self._stream = TokenStream()

    @property
    def starts(self) -> list[int]:
        return self._stream.starts

    def advance(self, text: str, *, final: bool = False) -> list[Token]:
        """The tokens that became final since the last call; ``text`` must extend the last one."""
        if not text.startswith(self.seen):
            raise ValueError("a stream scanner only accepts text that extends what it has seen")
        self.seen = text
        cut = len(text) if final else max(self._pos, settled_end(text))
        tokens = self._stream.feed(raw_tokens(text[self._pos : cut]), self._pos)
        self._pos = cut
        return tokens + self._stream.flush() if final else tokens
