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
