"""``proxy.passthrough``: which upstream fields a client gets (their release: test_release)."""

from __future__ import annotations

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
    calls = {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}], "content": None}
    assert passthrough.guarded(Extra(message={**calls, "audio": {}})).message == calls
    assert kept.choice["logprobs"] == {
        "content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}],
        "refusal": None}
    completion = Extra(choice={"logprobs": {"tokens": ["Hi"], "top_logprobs": [{"Ro": -1.0}]}})
    assert passthrough.guarded(completion).choice["logprobs"] == {
        "tokens": ["Hi"], "top_logprobs": None}
