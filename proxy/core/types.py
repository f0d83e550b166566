"""The wire-free types a request and its answer travel in, shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters of one request; ``extra`` holds unknown fields for passthrough."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Generation:
    """A complete answer."""

    text: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed answer: text, and on the last piece the finish reason/usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
