"""The guard interface shared by every input and output guard.

A guard looks at the conversation (and, for output guards, the text generated so far) and
returns a :class:`Verdict`. Guards are synchronous and pure; heavy artefacts (embedders, FAISS
indexes, classifiers) are built once per policy and handed to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from proxy.core.messages import Message

Action = Literal["allow", "block", "rewrite"]


@dataclass(frozen=True)
class Match:
    """The forget item a verdict refers to, and the evidence for it."""

    target_id: str
    item: str
    evidence: str = ""
    transform: str = "plain"  # the view that matched (filters.canonical): plain, base64, ...


@dataclass(frozen=True)
class Verdict:
    """One guard's decision on one request (or one output)."""

    action: Action
    guard: str
    score: float = 0.0
    threshold: float = 0.0
    match: Match | None = None
    replacement: str | None = None
    elapsed_ms: float = 0.0
    failed: bool = False  # the guard raised: an outage, not a decision on the text

    @property
    def is_block(self) -> bool:
        return self.action == "block"

    @property
    def outcome(self) -> str:
        """What happened, as responses and the audit log name it: ``guard_failed`` for a
        guard that raised, else the action."""
        return "guard_failed" if self.failed else self.action


@runtime_checkable
class InputGuard(Protocol):
    """Decides on a request before the backend is called."""

    name: str

    def check_input(self, messages: Sequence[Message]) -> Verdict: ...


@runtime_checkable
class OutputGuard(Protocol):
    """Decides on generated text; sees every character before the client does."""

    name: str
    hold_back_chars: int

    def check_output(
        self, messages: Sequence[Message], text: str, *, final: bool = False
    ) -> Verdict:
        """The verdict on ``text``, which grows between calls of one stream; ``final`` marks
        the complete text (its unsettled tail is checked too)."""
        ...

    def release_limit(self, text: str) -> int:
        """How many leading characters of ``text`` (a stream so far, checked and allowed) may
        reach the client: no continuation can make them part of a block."""
        ...
