"""``proxy.passthrough``: which upstream fields a client gets, and when a stream releases them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy import passthrough
from proxy.core.types import NO_EXTRA, Extra

LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                         "top_logprobs": [{"token": "Rowling", "logprob": -2.0, "bytes": []}]}],
            "refusal": [{"token": "No", "logprob": -1.0, "bytes": [], "top_logprobs": []}]}
EXTRA = Extra({"system_fingerprint": "fp"}, {"logprobs": LOGPROBS, "x": 1},
              {"reasoning_content": "about Rowling", "role": "assistant"})


def test_a_block_keeps_the_metadata_only() -> None:
    assert passthrough.blocked(EXTRA) == Extra({"system_fingerprint": "fp"}, {"x": 1})
    assert passthrough.blocked(NO_EXTRA) is NO_EXTRA


def test_output_guards_pass_only_the_text_they_read() -> None:
    kept = passthrough.guarded(EXTRA)
    assert kept.top == EXTRA.top and kept.choice["x"] == 1
    assert kept.message == {"role": "assistant"}  # no reasoning text
    assert kept.choice["logprobs"] == {
        "content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}],
        "refusal": None}
    completion = Extra(choice={"logprobs": {"tokens": ["Hi"], "top_logprobs": [{"Ro": -1.0}]}})
    assert passthrough.guarded(completion).choice["logprobs"] == {
        "tokens": ["Hi"], "top_logprobs": None}


@given(pieces=st.lists(st.tuples(st.text(max_size=5), st.booleans()), max_size=12),
       cuts=st.lists(st.integers(0, 60), max_size=12))
def test_a_stream_releases_fields_with_their_text_never_before(
    pieces: list[tuple[str, bool]], cuts: list[int]
) -> None:
    """Pieces arrive (some with fields); after each, the text up to a random limit goes out.
    All text goes out in order, each event's fields exactly once, in order, with a chunk that
    ends at or after the event's text."""
    text, sent, pending, out = "", 0, passthrough.Pending(), []
    ends: dict[int, int] = {}  # event -> where its text ended
    for i, (piece, has_fields) in enumerate(pieces):
        text += piece
        if has_fields:
            pending.append((len(text), Extra({"i": i})))
            ends[i] = len(text)
        limit = min(cuts[i] if i < len(cuts) else 0, len(text))
        chunks, sent = passthrough.release(text, sent, max(limit, sent), pending)
        out += chunks
    chunks, sent = passthrough.release(text, sent, len(text), pending)
    out += chunks
    assert "".join(c.text for c in out) == text and not pending
    released, seen = 0, []
    for chunk in out:
        released += len(chunk.text)
        if chunk.extra:
            seen.append(chunk.extra.top["i"])
            assert released == ends[seen[-1]]  # their piece ends where their text ended
    assert seen == list(ends)
