"""The wire-free types a request and its answer travel in, shared by every layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Fields = Mapping[str, Any]
NO_FIELDS: Fields = MappingProxyType({})


def _no_fields() -> Fields:
    return NO_FIELDS


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters of one request; ``extra`` holds unknown fields for passthrough.

    ``sent`` is the client's request exactly as it came (every field but the messages or the
    prompt, in its order): an OpenAI-compatible upstream gets these fields unchanged, with
    only ``model`` replaced. None for a request made in code (the harness, the benchmarks),
    whose typed fields are sent instead. Embedded engines read the typed fields only.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sent: Fields | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts; ``extra`` holds the upstream's other usage fields as it sent them
    (``total_tokens``, ``prompt_tokens_details``, ``completion_tokens_details``, …), which the
    wire format writes over the computed ones; ``event`` the other top-level fields of the
    stream event that brought it (its usage event goes out with them)."""

    prompt_tokens: int
    completion_tokens: int
    extra: Fields = field(default_factory=_no_fields)
    event: Fields = field(default_factory=_no_fields)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Extra:
    """The fields of an upstream answer that the proxy passes through without reading them,
    as the upstream sent them (their order kept), by where they go back: ``top`` the response
    or chunk object (``system_fingerprint``, ``service_tier``, …), ``choice`` its choice
    (``logprobs`` among them), ``message`` the choice's message or delta. Falsy when empty."""

    top: Fields = field(default_factory=_no_fields)
    choice: Fields = field(default_factory=_no_fields)
    message: Fields = field(default_factory=_no_fields)

    def __bool__(self) -> bool:
        return bool(self.top or self.choice or self.message)


NO_EXTRA = Extra()


@dataclass(frozen=True)
class Generation:
    """A complete answer (its first choice); ``extra`` the upstream's fields passed through
    (see :class:`Extra`; tool calls are among its message fields). An answer to ``n > 1``
    holds its further choices in ``more``, each with its own ``index`` and fields (their
    ``usage`` is the answer's, their ``extra.top`` empty)."""

    text: str
    finish_reason: str
    usage: Usage
    extra: Extra = NO_EXTRA
    index: int = 0
    more: tuple[Generation, ...] = ()

    @property
    def choices(self) -> tuple[Generation, ...]:
        """Every choice, the first one included."""
        return (self, *self.more)


@dataclass(frozen=True)
class Choice:
    """One choice of a complete answer as the client gets it: the generated text (or a
    block's refusal), its finish reason, the fields passed through and its ``index``."""

    text: str
    finish_reason: str
    extra: Extra = NO_EXTRA
    index: int = 0


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed answer: text, and on the last piece the finish reason/usage;
    ``extra`` the fields of the upstream event it came from, passed through (a tool call's
    fragments among the delta's fields); ``index`` the choice it belongs to (``n > 1``)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    extra: Extra = NO_EXTRA
    index: int = 0
