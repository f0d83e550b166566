"""Test helper: one answer streamed through the real :meth:`proxy.pipeline.Pipeline.answer_stream`.

A scripted backend yields the answer in the pieces a test chooses (single characters, word-like
tokens, seeded random cuts), so unit tests exercise the pipeline's own hold-back and final
check instead of a copy of its loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from filters.base import OutputGuard
from proxy.core.types import Chunk, GenerationParams, Usage
from proxy.core.config import ForgetTargetConfig, PolicyConfig
from proxy.core.errors import PolicyBlockedError
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime, Request
from proxy.policy import CompiledPolicy

MODEL = "scripted"


def random_pieces(text: str, seed: int, *, longest: int = 12) -> list[str]:
    """``text`` cut at seeded random places into pieces of 1..``longest`` characters."""
    rng, pieces, start = random.Random(seed), [], 0
    while start < len(text):
        size = rng.randint(1, longest)
        pieces.append(text[start : start + size])
        start += size
    return pieces


@dataclass
class ScriptedBackend:
    """Streams ``pieces``, and counts tokens for the input side."""

    pieces: Sequence[str]

    async def stream_chat(self, messages: Any, params: GenerationParams) -> AsyncIterator[Chunk]:
        for piece in self.pieces:
            yield Chunk(piece)
        yield Chunk(finish_reason="stop", usage=Usage(1, len(self.pieces)))

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@dataclass(frozen=True)
class Streamed:
    """What a client of a strict policy received: the text released before the end, and
    whether the stream ended in a block (``PolicyBlockedError``) or a finish reason."""

    released: str
    blocked: bool
    finish_reason: str | None


async def stream_pieces(guards: Sequence[OutputGuard], pieces: Sequence[str]) -> Streamed:
    """Stream ``pieces`` through a pipeline whose strict policy has the output ``guards`` (its
    forget list is a placeholder: the guards carry what they check)."""
    placeholder = ForgetTargetConfig(id="placeholder", name="Zyxw Placeholder")
    config = PolicyConfig(forget=[placeholder], stream_block="strict")
    policy = CompiledPolicy("p", config, guards=[(None, guard) for guard in guards])
    policies: dict[str, PolicyRuntime] = {"p": policy}
    backend: Any = ScriptedBackend(pieces)
    pipeline = Pipeline(backends={MODEL: backend}, policies=policies, metrics=Metrics(), store=None)
    messages = [{"role": "user", "content": "Tell me something."}]
    request = Request("chat", MODEL, messages, GenerationParams(), "req-1")
    released, finish = "", None
    try:
        async for chunk in pipeline.answer_stream(request, "p"):
            released += chunk.text
            finish = chunk.finish_reason or finish
    except PolicyBlockedError:
        return Streamed(released, True, None)
    return Streamed(released, False, finish)


def stream_text(guards: Sequence[OutputGuard], pieces: Sequence[str]) -> Streamed:
    """:func:`stream_pieces` for synchronous tests."""
    return asyncio.run(stream_pieces(guards, pieces))
