"""Server-sent events framing, exactly as OpenAI sends it."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
SLOT = "\x00slot\x00"  # stands for the varying string of an EventTemplate


def event(data: dict[str, Any]) -> bytes:
    """One ``data: <json>`` event."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode("utf-8") + b"\n\n"


class EventTemplate:
    """An event with one varying string field, encoded once: ``render(text)`` equals
    ``event(data)`` with :data:`SLOT` replaced by ``text`` (a stream sends one per token)."""

    def __init__(self, data: dict[str, Any]) -> None:
        prefix, slot, suffix = event(data).partition(json.dumps(SLOT).encode())
        if not slot:
            raise ValueError("the template holds no SLOT string")
        self._prefix, self._suffix = prefix, suffix

    def render(self, text: str) -> bytes:
        return self._prefix + json.dumps(text).encode() + self._suffix
