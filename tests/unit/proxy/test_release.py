"""``proxy.release``: the guard text of a choice (content and tool calls), built the same from
a whole message and from a stream's fragments, and a stream's hold-back of text and fields."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.core.types import Chunk, Extra
from proxy.release import GuardText, HeldChoice, whole_text


def _call(index: int, name: str | None = None, arguments: str | None = None) -> dict[str, Any]:
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    return {"tool_calls": [{"index": index, "function": function}]}


def test_tool_calls_are_read_after_the_content_with_escapes_decoded() -> None:
    message = {"tool_calls": [
        {"index": 0, "id": "c1", "type": "function",
         "function": {"name": "lookup", "arguments": '{"who": "J\\u00f6rg \\"K\\""}'}},
        {"index": 1, "function": {"name": "save", "arguments": '{"e": "\\ud83d\\ude00\\\\u0041"}'}},
    ], "function_call": {"name": "legacy", "arguments": "{}"}}
    assert whole_text("Let me check.", message) == (
        'Let me check.\nlookup\n{"who": "Jörg "K""}\nsave\n{"e": "😀\\u0041"}\nlegacy\n{}')
    assert whole_text("plain", {"audio": {"data": "Rowling"}}) == "plain"  # not model text


@given(value=st.text(max_size=30), cuts=st.lists(st.integers(0, 80), max_size=8),
       ensure_ascii=st.booleans())
def test_streamed_arguments_give_the_whole_messages_text(
    value: str, cuts: list[int], ensure_ascii: bool
) -> None:
    """Arguments cut anywhere (inside an escape too) decode as the whole do, each string as the
    client's JSON parser reads it."""
    arguments = json.dumps({"v": value}, ensure_ascii=ensure_ascii)
    view, start = GuardText(), 0
    view.add("", _call(0, name="f"))
    for cut in sorted(cuts) + [len(arguments)]:
        view.add("", _call(0, arguments=arguments[start:max(start, cut)]))
        start = max(start, cut)
    assert view.close() == whole_text("", {"tool_calls": [
        {"function": {"name": "f", "arguments": arguments}}]}) == 'f\n{"v": "' + value + '"}'


def test_a_cut_escape_is_not_read_until_it_is_whole() -> None:
    view = GuardText()
    view.add("", _call(0, arguments='"J\\u00'))
    assert view.text == '"J'  # the escape's start waits for its end
    view.add("", _call(0, arguments="f6"))
    assert view.text == '"Jö'
    view.add("", _call(0, arguments="\\"))
    assert view.close() == '"Jö\\'  # left cut off at the end: kept as sent


@given(pieces=st.lists(st.tuples(st.text(max_size=5), st.booleans(), st.text(max_size=4)),
                       max_size=12),
       cuts=st.lists(st.integers(0, 60), max_size=12))
def test_a_stream_releases_fields_with_their_text_never_before(
    pieces: list[tuple[str, bool, str]], cuts: list[int]
) -> None:
    """Pieces arrive (content, some with fields, some with tool-call arguments); after each,
    what the guard text settles up to a random limit goes out. All content goes out in order,
    each event's fields exactly once, in order, with its last character, and never before the
    limit passed the end of the event's guard text."""
    held, out, limits = HeldChoice(3), [], []
    ends: dict[int, int] = {}  # event -> where its guard text ended
    for i, (text, has_fields, arguments) in enumerate(pieces):
        message = _call(0, arguments=arguments) if arguments else {}
        extra = Extra({"i": i}, message=message) if has_fields or arguments else Extra()
        held.add(Chunk(text, extra=extra))
        if extra:
            ends[i] = len(held.view.text)
        limit = min(cuts[i] if i < len(cuts) else 0, len(held.view.text))
        released = held.release(limit)
        limits += [limit] * len(released)
        out += released
    final = held.release(len(held.view.close()))
    out += final
    limits += [len(held.view.text)] * len(final)
    assert "".join(c.text for c in out) == "".join(p[0] for p in pieces)
    assert all(c.index == 3 for c in out)
    seen = [c.extra.top["i"] for c in out if c.extra]
    assert seen == list(ends)
    for chunk, limit in zip(out, limits, strict=True):
        if chunk.extra:
            assert ends[chunk.extra.top["i"]] <= limit
