"""The interface every backend (upstream API, llama.cpp, transformers) implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from proxy.core.errors import UnsupportedError
from proxy.core.messages import Message
from proxy.core.types import Chunk, Generation, GenerationParams, Usage

DEFAULT_TEMPERATURE = 1.0  # OpenAI's default when a request sets none; 0 means greedy


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do beyond text generation (labels the harness tiers T/L/W)."""

    logprobs: bool = False
    prefill: bool = False
    weights: bool = False
    max_n: int = 1


@runtime_checkable
class Backend(Protocol):
    """Chat and completion, streaming and not, plus batch helpers for the harness."""

    capabilities: Capabilities

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation: ...

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]: ...

    async def complete(self, prompt: str, params: GenerationParams) -> Generation: ...

    def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


def check_supported(params: GenerationParams, capabilities: Capabilities, engine: str) -> None:
    """Raise a 400 naming the parameter when a request asks an embedded ``engine`` for what
    it cannot do, never answering without it: more choices than ``capabilities.max_n``, the
    log-probabilities of the generated tokens (``logprobs``, ``top_logprobs``), or tool
    calling (``tools``, ``functions``)."""
    if params.n > capabilities.max_n:
        raise UnsupportedError(
            f"n={params.n} is not supported by this model's backend (at most {capabilities.max_n})",
            param="n",
        )
    for name, what in _ENGINE_FEATURES:
        value = params.extra.get(name)
        if value is None or value is False or value == [] or (name == "top_logprobs" and value == 0):
            continue
        raise UnsupportedError(
            f"{name} is not supported by the {engine} backend ({what}); use an "
            "OpenAI-compatible upstream for it",
            param=name,
        )


_ENGINE_FEATURES = (
    ("logprobs", "it returns no token log-probabilities"),
    ("top_logprobs", "it returns no token log-probabilities"),
    ("tools", "it has no tool calling"),
    ("functions", "it has no function calling"),
)


def approx_token_count(text: str) -> int:
    """A tokenizer-free estimate (about four characters a token) for engines without one."""
    return max(1, (len(text) + 3) // 4) if text else 0
