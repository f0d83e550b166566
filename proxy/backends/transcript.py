"""A plain-text chat rendering for base models that ship without a chat template.

The embedded Gemma 3 270M is a pretrained (not instruction-tuned) model: its GGUF has no chat
template, and the Gemma turn markers make it loop. A ``Q:``/``A:`` transcript is what such a
model continues best (measured on factual questions), so chat requests are rendered as one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from proxy.core.messages import message_text
from proxy.core.types import Chunk

TRANSCRIPT_STOP = ("\nQ:",)
_PREFIXES = {"user": "Q: ", "assistant": "A: "}


def render_transcript(messages: Sequence[dict[str, Any]]) -> str:
    """System/developer text first, then ``Q:``/``A:`` turns, ending with an open ``A:``."""
    lines: list[str] = []
    for message in messages:
        role, text = str(message.get("role")), message_text(message).strip()
        if role in ("system", "developer"):
            lines.append(f"{text}\n")
        elif role in _PREFIXES:
            lines.append(f"{_PREFIXES[role]}{text}")
    lines.append("A:")
    return "\n".join(lines)


def with_transcript_stops(stop: Sequence[str]) -> list[str]:
    """The request's stop sequences plus the one that ends an answer turn."""
    return [*stop, *(s for s in TRANSCRIPT_STOP if s not in stop)][:4]


async def strip_stream(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """Drop leading and trailing whitespace of a streamed answer, as ``str.strip`` would."""
    started, pending = False, ""
    async for chunk in chunks:
        text = chunk.text if started else chunk.text.lstrip()
        started = started or bool(text)
        body = text.rstrip()
        if body:
            yield replace(chunk, text=pending + body)
            pending = text[len(body):]
        else:
            pending += text
            if chunk.finish_reason or chunk.usage:
                yield replace(chunk, text="")
