from __future__ import annotations

import pytest

from filters.input_detector import query_texts


@pytest.mark.parametrize(
    ("turns", "context", "expected"),
    [
        ([], 3, []),
        (["  "], 3, []),
        (["only one"], 3, ["only one"]),
        (["a", "b"], 1, ["b"]),
        (["a", "b", "c", "d"], 3, ["d", "b\nc\nd"]),
        (["a", " ", "c"], 3, ["c", "a\nc"]),
    ],
)
def test_query_texts(turns: list[str], context: int, expected: list[str]) -> None:
    messages = [{"role": "system", "content": "be nice"}]
    for turn in turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    assert query_texts(messages, context) == expected


def test_long_prompts_add_sentence_windows() -> None:
    filler = "Please read all of this carefully before you answer. " * 40
    texts = query_texts([{"role": "user", "content": filler + "Who founded the glassworks?"}])
    assert len(texts) > 2
    assert texts[-1].endswith("Who founded the glassworks?")
    assert all(len(t.split()) <= 60 for t in texts[1:])
    many = query_texts([{"role": "user", "content": "word. " * 5000}])
    assert len(many) <= 1 + 32
