"""The pre-encoded token event is byte-identical to encoding the whole chunk."""

from __future__ import annotations

import pytest

from proxy.protocol import ChunkFactory
from proxy.sse import SLOT, EventTemplate, event

TEXTS = ["", "plain", ' "quoted" \\ back', "new\nline\ttab", "Zürich — 東京 🚀", "\x00\x1f", SLOT]


@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("text", TEXTS)
def test_render_equals_event(kind: str, text: str) -> None:
    factory = ChunkFactory(kind=kind, request_id="chatcmpl-1", model="m/ü")  # type: ignore[arg-type]
    assert EventTemplate(factory.choice(SLOT)).render(text) == event(factory.choice(text))


def test_a_template_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="SLOT"):
        EventTemplate({"choices": []})
