"""Look-alike letters folded to the ASCII letters they imitate.

The table is Unicode's ``confusables.txt`` (UTS #39), as shipped by the maintained
``confusable_homoglyphs`` package: every character whose confusable prototype is (directly or
through other prototypes) one ASCII letter or digit maps to it, case kept where the source has
one (Greek ``Ι`` and Cyrillic ``І`` to ``I``, though the prototype of both is ``l``). Latin
letters the table leaves out (small capitals ``ᴀ ʀ ɢ``, ``ǫ``) are transliterated with
``anyascii`` when that gives one ASCII letter; accented letters are left to the accent strip.

:func:`deconfuse` applies the table inside the words a look-alike attack writes: words that
hold an ASCII letter ("Rоwling" with a Cyrillic ``о``), and words made only of look-alikes
(all-Cyrillic "Ј. К."); other words ("привет", Greek prose) are left as written.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources

from anyascii import anyascii

__all__ = ["confusable_table", "deconfuse"]

_MAX_HOPS = 4
_WORD = re.compile(r"[^\W\d_]+")


def _ascii_alnum(text: str) -> bool:
    return len(text) == 1 and text.isascii() and text.isalnum()


def _prototypes() -> dict[str, list[str]]:
    raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    data = json.loads(raw)
    return {key: [entry["c"] for entry in value] for key, value in data.items() if len(key) == 1}


def _resolve(char: str, graph: dict[str, list[str]]) -> str | None:
    """The ASCII letter or digit ``char`` imitates, following prototypes breadth first."""
    frontier, seen = [char], {char}
    for _ in range(_MAX_HOPS):
        nxt = []
        for node in frontier:
            for proto in graph.get(node, ()):
                if _ascii_alnum(proto):
                    return proto
                if len(proto) == 1 and proto not in seen:
                    seen.add(proto)
                    nxt.append(proto)
        frontier = nxt
    return None


def _with_case(source: str, target: str) -> str:
    if target.isalpha() and unicodedata.category(source) == "Lu":
        return "I" if target == "l" else target.upper()
    return target


@lru_cache(maxsize=1)
def confusable_table() -> dict[int, str]:
    """``str.translate`` table: non-ASCII look-alike letter -> the ASCII letter it imitates."""
    graph = _prototypes()
    table: dict[int, str] = {}
    for char in graph:
        if char.isascii() or not char.isalpha():
            continue
        target = _resolve(char, graph)
        if target is not None:
            table[ord(char)] = _with_case(char, target)
    return table


@lru_cache(maxsize=8192)
def _latin_of(char: str) -> str | None:
    """The ASCII letter a non-ASCII letter stands for, or None."""
    mapped = confusable_table().get(ord(char))
    if mapped is not None:
        return mapped
    if "LATIN" in unicodedata.name(char, "") and not unicodedata.decomposition(char):
        out = anyascii(char)
        if len(out) == 1 and out.isalpha():
            return out
    return None


def _fold_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if word.isascii():
        return word
    mapped = [c if c.isascii() else _latin_of(c) for c in word]
    has_ascii = any(c.isascii() for c in word)
    if not has_ascii and any(m is None for m in mapped):
        return word  # a word of another script, not a disguised Latin one
    return "".join(m if m is not None else c for m, c in zip(mapped, word, strict=True))


def deconfuse(text: str) -> str:
    """Look-alike letters mapped to ASCII inside words that imitate Latin ones."""
    if text.isascii():
        return text
    return _WORD.sub(_fold_word, text)
