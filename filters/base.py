"""The guard interface shared by every input and output guard.

A guard looks at the conversation (and, for output guards, the text generated so far) and
returns a :class:`Verdict`. Guards are synchronous and pure; heavy artefacts (embedders, FAISS
indexes, classifiers) are built once per policy and handed to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Action = Literal["allow", "block", "rewrite"]
Message = dict[str, object]


@dataclass(frozen=True)
class Match:
    """The forget item a verdict refers to, and the evidence for it."""

    target_id: str
    item: str
    evidence: str = ""


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

    @property
    def is_block(self) -> bool:
        return self.action == "block"


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


def message_text(message: Message) -> str:
    """The plain text of a chat message (string content or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(str(p) for p in parts if p)
    return ""


def user_turns(messages: Sequence[Message]) -> list[str]:
    """The texts of the user turns, oldest first."""
    return [message_text(m) for m in messages if m.get("role") == "user"]
