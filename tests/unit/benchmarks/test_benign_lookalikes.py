"""The benign look-alike corpus: seeded, every kind, and harmless to the real alias matcher."""

from __future__ import annotations

import base64

from benchmarks.benign_lookalikes import KINDS, benign_texts
from filters.alias_matcher import AliasTable, find_in_views
from filters.canonical import views


def test_the_corpus_is_seeded_and_covers_every_kind() -> None:
    texts = benign_texts()
    assert len(texts) >= 300 and {kind for kind, _ in texts} == set(KINDS)
    assert texts == benign_texts() and texts != benign_texts(seed=1)
    assert len({text for _, text in texts}) > 0.9 * len(texts)


def test_base64_blobs_decode_to_harmless_text_and_name_nobody() -> None:
    table = AliasTable([("a", "Basil Mahfouz Al-Kuwaiti"), ("b", "Hsiao Yun-Hwa"),
                        ("c", "J. K. Rowling"), ("d", "Stephen King")])
    for kind, text in benign_texts():
        assert find_in_views(table, text) is None, (kind, text)
        if kind == "base64 of harmless text":
            blob = text.split()[-1]
            assert base64.b64decode(blob).decode() in views(text)[-1].text
