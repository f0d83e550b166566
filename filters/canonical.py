"""The canonicalisation stage every input and output guard reads: a text and its decoded views.

A guard scores each :class:`View` of a text and the worst view wins; the verdict names the
view's ``transform``. The first view is always the text itself (``plain``; the matchers fold
it: invisible characters, NFKC, confusables, case, accents, leetspeak, separators inside words
— :mod:`filters.normalize`, :mod:`filters.alias_matcher`). Decoded views come from up to
``MAX_DEPTH`` rounds of :func:`decode_once`, each on the previous round's output:

1. base64 / base32 / hex spans whose bytes are printable text;
2. whole-text unescapes wherever their markers occur (``\\u`` escapes, URL percent, HTML
   entities, NATO runs);
3. each *segment* (a line, or the part after a colon) that does not read as plain language
   (:func:`filters.lexicon.is_plain`) is read reversed, in ROT13, as leetspeak, with spaced
   letters collapsed, as Morse or as NATO spelling, and the best reading is kept when it reads
   as plain language and clearly better than the segment, or when it holds escapes or
   entities the segment did not (entities written backwards).

Text that already reads as plain language and holds no encoded span costs one plausibility
test per segment and a few regex scans: no decoding is tried on it. Input is capped at
``MAX_CHARS`` characters per text (the rest is not decoded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from filters.decoders import (
    CERTAIN_READINGS, SEGMENT_DECODERS, SPAN_DECODERS, TEXT_DECODERS, Decoder, is_texty,
)
from filters.lexicon import PLAIN, known_words, plausibility
from filters.normalize import TextFeed, Token, settled_end

__all__ = ["MAX_CHARS", "MAX_DEPTH", "PLAIN_VIEW", "View", "combine", "decode_once",
           "decoded_views", "settled_views", "views"]

MAX_DEPTH = 2
MAX_CHARS = 16_384
GAIN = 0.25  # how much better a reading must score than the segment it replaces
PLAIN_VIEW = "plain"
_SEGMENTS = re.compile(r"(\n+|:[^\S\n]+)")
_MIN_SEGMENT_LETTERS = 3
_ENOUGH_LETTERS = re.compile(rf"(?:[^\W\d_][\W\d_]*){{{_MIN_SEGMENT_LETTERS}}}")
_MIN_WORDS = 2  # English words of 3+ letters a reading needs: one is too small a sample
_CODE_TOKEN = r"(?:[^\sA-Za-z]|[A-Fa-f])*[&#;%\\.\-·•/|](?:[^\sA-Za-z]|[A-Fa-f])*"
_CODE_RUN = re.compile(rf"(?<!\S){_CODE_TOKEN}(?:[^\S\n]+{_CODE_TOKEN})+(?!\S)|(?<!\S)[^\sA-Za-z]{{8,}}(?!\S)")
_CODE_READINGS = tuple((n, d) for n, d in SEGMENT_DECODERS if n in ("reversed", "morse"))
_CODE_MARKS = frozenset(".-·•&#;%\\")  # Morse, entities, percent and escapes: few letters


@dataclass(frozen=True)
class View:
    """One reading of a text: ``transform`` names how it was obtained (``plain``, ``base64``,
    ``reversed``, ``base64>rot13`` for two rounds, ``base64+reversed`` for two in one)."""

    transform: str
    text: str


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")


def _whole(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a whole token (a hex run inside a base64 blob is not)."""
    return ((start == 0 or text[start - 1] not in _TOKEN_CHARS)
            and (end == len(text) or text[end] not in _TOKEN_CHARS))


def _decode_spans(text: str, fired: list[str]) -> str:
    for name, pattern, decoder in SPAN_DECODERS:
        def one(match: re.Match[str], name: str = name, decoder=decoder) -> str:  # type: ignore[no-untyped-def]
            span = match.group(0).rstrip(" :,")
            if not _whole(match.string, match.start(), match.start() + len(span)):
                return match.group(0)
            out = decoder(span)
            if out is None:
                return match.group(0)
            fired.append(name)
            return out + match.group(0)[len(span):]
        text = pattern.sub(one, text)
    return text


def _unlocks(segment: str, reading: str) -> bool:
    """Whether ``reading`` holds escapes or entities that decode to text where ``segment``
    held none (entities written backwards: ``;89#&``)."""
    for _, decoder in TEXT_DECODERS:
        if decoder(segment) is None:
            out = decoder(reading)
            if out is not None and out != reading and is_texty(out):
                return True
    return False


def _read_segment(segment: str, fired: list[str],
                  decoders: tuple[tuple[str, Decoder], ...] = SEGMENT_DECODERS) -> str:
    """The best plain-language reading of a segment that is not plain language, or itself."""
    if not _ENOUGH_LETTERS.search(segment) and not any(c in _CODE_MARKS for c in segment):
        return segment
    score = plausibility(segment)
    if score >= PLAIN:
        return _CODE_RUN.sub(lambda m: _read_run(m.group(0), fired), segment)
    best, best_name, best_score = segment, "", score + GAIN
    for name, decoder in decoders:
        out = decoder(segment)
        if out is None or out == segment:
            continue
        if name in CERTAIN_READINGS or _unlocks(segment, out):  # only this code reads so
            best, best_name = out, name
            break
        candidate = plausibility(out)
        if candidate >= PLAIN and candidate >= best_score and known_words(out) >= _MIN_WORDS:
            best, best_name, best_score = out, name, candidate
    if best_name:
        fired.append(best_name)
    return best


def _read_run(run: str, fired: list[str]) -> str:
    """A run of letterless code tokens inside plain text (Morse, entities or escapes, maybe
    backwards), read as :func:`_read_segment` reads a segment."""
    return _read_segment(run, fired, _CODE_READINGS) if plausibility(run) < PLAIN else run


def decode_once(text: str) -> tuple[str, list[str]]:
    """One round of decoding (see the module docstring) and the transforms that fired."""
    fired: list[str] = []
    head, tail = text[:MAX_CHARS], text[MAX_CHARS:]
    head = _decode_spans(head, fired)
    for name, decoder in TEXT_DECODERS:
        out = decoder(head)
        if out is not None and out != head:
            fired.append(name)
            head = out
    parts = _SEGMENTS.split(head)
    for index in range(0, len(parts), 2):
        parts[index] = _read_segment(parts[index], fired)
    return "".join(parts) + tail, list(dict.fromkeys(fired))


def decoded_views(text: str) -> list[View]:
    """The decoded views of ``text`` (none for plain text), at most ``MAX_DEPTH``."""
    out: list[View] = []
    current, names = text, ""
    for _ in range(MAX_DEPTH):
        decoded, fired = decode_once(current)
        if not fired or decoded == current:
            break
        names = "+".join(fired) if not names else f"{names}>{'+'.join(fired)}"
        out.append(View(names, decoded))
        current = decoded
    return out


def views(text: str) -> list[View]:
    """The text itself (``plain``), then its decoded views."""
    return [View(PLAIN_VIEW, text), *decoded_views(text)]


def settled_views(text: str, *, final: bool) -> list[tuple[View, list[Token]]]:
    """The decoded views of a growing text and their settled tokens (all of them when
    ``final``): views of the settled part only, so a later character cannot change them."""
    settled = text if final else text[: settled_end(text)]
    return [(view, TextFeed().advance(view.text, final=final)) for view in decoded_views(settled)]


def combine(outer: str, inner: str) -> str:
    """The name of ``inner`` (a matcher's own spelling) read inside view ``outer``."""
    if inner == PLAIN_VIEW:
        return outer
    return inner if outer == PLAIN_VIEW else f"{outer}>{inner}"
