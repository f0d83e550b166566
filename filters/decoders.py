"""Decoders that undo the encodings used to slip text past a guard.

Two kinds, both pure ``str -> str | None`` functions (None: nothing decoded):

* **byte and escape decoders** (:data:`SPAN_DECODERS`, :data:`TEXT_DECODERS`): base64,
  base32, hex, ``\\u`` escapes, URL percent-encoding, HTML entities. A base64/base32/hex span is
  decoded only when its bytes are printable UTF-8 text (:func:`is_texty`): random tokens,
  hashes and keys decode to bytes that are not;
* **spellings** (in :data:`TEXT_DECODERS`): runs of NATO code words;
* **reading decoders** (:data:`SEGMENT_DECODERS`): a whole segment read another way, reversed,
  ROT13, leetspeak, letter-spaced/dotted/dashed letters collapsed, Morse. They
  always give some text; :mod:`filters.canonical` keeps it only when it reads as plain language.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote

from filters.lexicon import lexicon

__all__ = ["CERTAIN_READINGS", "SEGMENT_DECODERS", "SPAN_DECODERS", "TEXT_DECODERS", "Decoder", "is_texty"]

Decoder = Callable[[str], "str | None"]

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_BASE32 = re.compile(r"[A-Z2-7]{16,}={0,6}")
_HEX = re.compile(r"(?:(?:\\x|0x)?[0-9a-fA-F]{2}[ :,]?){6,}")
_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\\x[0-9a-fA-F]{2}")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ENTITY = re.compile(r"&(?:#[0-9]{2,7}|#[xX][0-9a-fA-F]{2,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def is_texty(text: str) -> bool:
    """Printable text: no control characters but whitespace, a third letters and spaces once
    escapes and entities in it are read (``&#66;&#97;`` is text)."""
    if len(text) < 2 or any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")
                            and c not in "\n\t\r" for c in text):
        return False
    if "&" in text or "%" in text or "\\" in text:
        text = html.unescape(unquote(_escapes(text) or text))
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return letters >= 2 and letters >= 0.3 * len(text)


def _utf8(data: bytes) -> str | None:
    """``data`` as UTF-8 (a multi-byte character cut at the end is dropped), when texty."""
    for cut in range(4):
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return text if is_texty(text) else None
    return None


def _base64(span: str) -> str | None:
    body = span.rstrip("=")
    body = body[: len(body) - len(body) % 4] if len(body) % 4 == 1 else body
    padded = body + "=" * (-len(body) % 4)
    altchars = b"-_" if ("-" in body or "_" in body) else None
    try:
        return _utf8(base64.b64decode(padded, altchars=altchars, validate=True))
    except (binascii.Error, ValueError):
        return None


def _base32(span: str) -> str | None:
    body = span.rstrip("=")
    body = body[: len(body) - len(body) % 8] if len(body) % 8 in (1, 3, 6) else body
    try:
        return _utf8(base64.b32decode(body + "=" * (-len(body) % 8)))
    except (binascii.Error, ValueError):
        return None


def _hex(span: str) -> str | None:
    digits = re.sub(r"\\x|0x|[ :,]", "", span)
    try:
        return _utf8(bytes.fromhex(digits[: len(digits) // 2 * 2]))
    except ValueError:
        return None


SPAN_DECODERS: tuple[tuple[str, re.Pattern[str], Decoder], ...] = (
    ("hex", _HEX, _hex),
    ("base32", _BASE32, _base32),
    ("base64", _BASE64, _base64),
)
"""(name, candidate span pattern, decoder), tried in this order on each span."""


_BYTE_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")


def _escapes(text: str) -> str | None:
    """``\\uXXXX``/``\\UXXXXXXXX`` code points (surrogate pairs joined) and runs of ``\\xXX``
    as UTF-8 bytes."""
    if not _ESCAPE.search(text):
        return None

    def as_bytes(match: re.Match[str]) -> str:
        data = bytes(int(h, 16) for h in re.findall(r"[0-9a-fA-F]{2}", match.group(0)))
        return data.decode("utf-8", "replace")

    def code_point(match: re.Match[str]) -> str:
        return chr(int(match.group(0)[2:], 16))

    out = _ESCAPE.sub(code_point, _BYTE_ESCAPES.sub(as_bytes, text))
    return out.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _percent(text: str) -> str | None:
    return unquote(text, errors="replace") if len(_PERCENT.findall(text)) >= 2 else None


def _entities(text: str) -> str | None:
    return html.unescape(text) if _ENTITY.search(text) else None




def _rot13(text: str) -> str | None:
    return codecs.encode(text, "rot13")


def _reversed(text: str) -> str | None:
    return text[::-1]


_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s"})
_LEET_WORD = re.compile(r"[A-Za-z0-9@$]+")


def _leet_word(match: re.Match[str]) -> str:
    word = match.group(0)
    out = word.translate(_LEET)
    if any(c.isalpha() for c in word) or (len(word) <= 2 and out.lower() in lexicon()):
        return out
    return word  # a number ("1991", "105") unless it spells a short word ("15" -> "is")


def _leet(text: str) -> str | None:
    return _LEET_WORD.sub(_leet_word, text)


_SPACED_RUN = re.compile(r"(?<![^\W_])[^\W_](?:[^\S\n]*[-.·•_*|/\\,]?[^\S\n]*[^\W_](?![^\W_])){2,}")
_SEPARATOR = re.compile(r"(?<=[^\W_])[^\w\n]*(?=[^\W_])")


def _collapse_run(match: re.Match[str]) -> str:
    run = match.group(0)
    letters = re.findall(r"[^\W_]", run)
    gaps = _SEPARATOR.findall(run)
    if len(gaps) != len(letters) - 1:
        return run
    joiner = Counter(gaps).most_common(1)[0][0]
    out = [letters[0]]
    for gap, letter in zip(gaps, letters[1:], strict=True):
        out.append(letter if gap == joiner else " " + letter)
    return "".join(out)


def _collapse(text: str) -> str | None:
    """Runs of single letters ("W-h-o / i-s", "J o h n  D o e", "J.o.h.n") joined into words;
    the commonest gap of a run joins letters, any other gap separates words."""
    return _SPACED_RUN.sub(_collapse_run, text)


_MORSE_CODE = (
    ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- ...- "
    ".-- -..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----."
)
_MORSE = dict(zip(_MORSE_CODE.split(), "abcdefghijklmnopqrstuvwxyz0123456789", strict=True))
_MORSE_TEXT = re.compile(r"[.\-·•_−–—/|\s]+")


def _morse(text: str) -> str | None:
    if not _MORSE_TEXT.fullmatch(text) or text.count(".") + text.count("-") < 3:
        return None
    plain = text.translate(str.maketrans({"·": ".", "•": ".", "_": "-", "−": "-", "–": "-",
                                          "—": "-"}))
    words = re.split(r"\s*[/|]\s*|\s{2,}", plain.strip())
    out = ["".join(_MORSE.get(code, "") for code in word.split()) for word in words]
    return " ".join(w for w in out if w) or None


_NATO_WORDS = (
    "alfa alpha bravo charlie delta echo foxtrot golf hotel india juliett juliet kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey whisky x-ray "
    "xray yankee zulu"
)
_NATO = {word: word[0] for word in _NATO_WORDS.split()}
_NATO_RUN = re.compile(
    r"\b(?:" + "|".join(sorted(map(re.escape, _NATO), key=len, reverse=True)) + r")\b"
    r"(?:[\s,;/|-]+(?:" + "|".join(sorted(map(re.escape, _NATO), key=len, reverse=True))
    + r")\b){2,}", re.IGNORECASE)


def _nato_run(match: re.Match[str]) -> str:
    parts = re.split(r"(\s*[/|;]\s*|\s{2,})", match.group(0))
    words = []
    for part in parts:
        if part.strip() and part.strip() not in "/|;":
            words.append("".join(_NATO[w.lower()] for w in re.findall(r"[A-Za-z-]+", part)
                                 if w.lower() in _NATO))
    return " ".join(words)


def _nato_or_keep(match: re.Match[str]) -> str:
    words = {w.lower() for w in re.findall(r"[A-Za-z-]+", match.group(0))}
    return _nato_run(match) if len(words & _NATO.keys()) >= 3 else match.group(0)


def _nato(text: str) -> str | None:
    """Runs of NATO code words (three distinct ones at least: "alpha alpha alpha" is not a
    spelling) as the letters they spell."""
    return _NATO_RUN.sub(_nato_or_keep, text) if _NATO_RUN.search(text) else None


TEXT_DECODERS: tuple[tuple[str, Decoder], ...] = (
    ("escapes", _escapes), ("percent", _percent), ("html", _entities), ("nato", _nato),
)
"""(name, decoder) of whole-text unescapes and spellings: each applies wherever its markers
occur (a run of three NATO code words is a spelling: its words are English words too)."""

SEGMENT_DECODERS: tuple[tuple[str, Decoder], ...] = (
    ("spaced", _collapse), ("reversed", _reversed), ("rot13", _rot13), ("leet", _leet),
    ("morse", _morse),
)
"""(name, decoder) readings of a whole segment that does not read as plain language."""
CERTAIN_READINGS = frozenset({"morse"})
"""Readings that only apply to text written in their code (all dots, dashes and slashes):
kept without the plain-language test (a Morse name is no English word)."""
