"""Text normalisation shared by the alias matcher and the n-gram output filter.

A text becomes a sequence of *tokens*: invisible characters dropped, Unicode NFKC, casefolded,
accents stripped, split on anything that is not a letter or digit (letters of scripts written
without spaces are tokens of their own), with leetspeak undone inside words that contain a
letter (``H5iao`` -> ``hsiao``; pure numbers such as ``1991`` are kept) and runs of single
letters merged, so "J. K. Rowling", "JK Rowling" and "j.k.rowling" all give ``jk rowling``.
Cyrillic/Greek look-alike letters inside a Latin word are mapped to Latin first (homoglyphs).
The digit ``1`` stands for ``i`` or ``l``: a token keeps both readings.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Scripts written without spaces between words (CJK ideographs, kana, Thai, Lao, Khmer,
# Myanmar): each of their letters is a token of its own, so a Latin name next to them ("作者是
# J.K.Rowling") is still a word of its own.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff"
             "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002ffff")
_UNSPACED_CHAR = re.compile(f"[{_UNSPACED}]")
_WORD = re.compile(f"(?:[^\\W_{_UNSPACED}]|[@$])+|[{_UNSPACED}]")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)


# Cyrillic and Greek letters that look like Latin ones (upper and lower case), as used to
# slip a name past a matcher: "Rоwling" with a Cyrillic "о".
_CONFUSABLES = str.maketrans({
    **dict(zip("АВЕЅІЈКМНОРСТХУԁһіјӏѕаесорхуԛԝ", "ABESIJKMHOPCTXYdhijlsaecopxyqw", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ", "ABEZHIKMNOPTYXaiknoptux", strict=True)),
})
_LATIN = re.compile(r"[A-Za-z]")
_MIXED_WORD = re.compile(r"[^\W\d_]+")


def deconfuse(text: str) -> str:
    """Map Cyrillic/Greek look-alike letters to Latin inside words that also hold Latin ones."""

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        return word.translate(_CONFUSABLES) if _LATIN.search(word) else word

    return _MIXED_WORD.sub(fix, text)


# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt): characters that
# render as nothing (zero-width spaces and joiners, soft hyphen, word joiner, invisible
# operators, bidi marks and overrides, BOM, variation selectors, tags, Hangul fillers), used to
# slip a name past a matcher: "Zor\u200bblax". They are dropped before anything else.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def fold(text: str) -> str:
    """Invisible characters dropped, look-alike letters to Latin, NFKC, casefold and accents
    (combining marks) stripped."""
    folded = unicodedata.normalize("NFKC", deconfuse(_INVISIBLE.sub("", text))).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _clean_word(word: str) -> str:
    """Undo leetspeak in a word that contains a letter; drop stray ``@``/``$`` elsewhere."""
    word = word.lstrip("@")
    if any(c.isalpha() for c in word):
        return word.translate(_LEET)
    return word.replace("@", "").replace("$", "")


@dataclass(frozen=True)
class Token:
    """A normalised word and, when it contains the digit 1, its ``1 -> l`` reading."""

    text: str
    alt: str | None = None

    def readings(self) -> tuple[str, ...]:
        """Every spelling this token may stand for."""
        return (self.text,) if self.alt is None else (self.text, self.alt)

    @property
    def is_single(self) -> bool:
        """A lone letter of a spaced script (a run of them may spell a word: "J K Rowling")."""
        return len(self.text) == 1 and self.text.isalpha() and not _UNSPACED_CHAR.match(self.text)


def raw_tokens(text: str) -> list[Token]:
    """The normalised words of ``text`` before one-letter runs are merged."""
    tokens = []
    for match in _WORD.finditer(fold(text)):
        raw = match.group()
        word = _clean_word(raw)
        if not word:
            continue
        has_alt = "1" in raw and any(c.isalpha() for c in raw)
        tokens.append(Token(word, _clean_word(raw.replace("1", "l")) if has_alt else None))
    return tokens


class TokenStream:
    """Merges one-letter runs across pieces of a stream; a trailing run waits for more text."""

    def __init__(self) -> None:
        self._run: list[Token] = []

    def feed(self, tokens: list[Token]) -> list[Token]:
        """Merged tokens that are final; a trailing one-letter run is kept back."""
        out: list[Token] = []
        for token in tokens:
            if token.is_single:
                self._run.append(token)
                continue
            out.extend(self.flush())
            out.append(token)
        return out

    def flush(self) -> list[Token]:
        """The pending one-letter run as one token (at the end of the text)."""
        if not self._run:
            return []
        merged = Token("".join(t.text for t in self._run))
        self._run = []
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


def release_limit(text: str, hold_back_chars: int) -> int:
    """How much of a growing ``text`` a stream may release when a guard that reads settled
    tokens needs ``hold_back_chars`` of context: the settled part but its last
    ``hold_back_chars`` characters, so text that never settles (no space, no punctuation) is
    never released before the guard has read it."""
    return max(0, settled_end(text) - hold_back_chars) if hold_back_chars else len(text)


class TextFeed:
    """Turns successive prefixes of one text into newly final tokens (for stream scanners)."""

    def __init__(self) -> None:
        self.seen = ""
        self._pos = 0
        self._stream = TokenStream()

    def advance(self, text: str, *, final: bool = False) -> list[Token]:
        """The tokens that became final since the last call; ``text`` must extend the last one."""
        if not text.startswith(self.seen):
            raise ValueError("a stream scanner only accepts text that extends what it has seen")
        self.seen = text
        cut = len(text) if final else max(self._pos, settled_end(text))
        tokens = self._stream.feed(raw_tokens(text[self._pos : cut]))
        self._pos = cut
        return tokens + self._stream.flush() if final else tokens
