"""Context methods: what a policy adds to a request before the model sees it (a prompt prefix,
in-context unlearning demonstrations chosen by ERASE), and the registry that builds them.

Each entry of :data:`CONTEXT_BUILDERS` is ``build(cfg, *, policy, where, artifacts) ->``
:class:`ContextMethod`, taking the method's config model, the (merged) policy, the config path
for error messages, and a callable giving the policy's compiled artefacts (its forget index and
embedder) for the methods that need them. Entries are lazy ``"module:attr"`` references.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from icul.demonstrations import TokenCounter
from proxy.core.messages import Message
from proxy.core.registry import Registry


class ContextMethod(Protocol):
    """Rewrites a request before the backend sees it; ``when`` is ``always`` or ``detected``
    (only when an input guard flagged the request)."""

    @property
    def when(self) -> str: ...

    def apply_chat(
        self, messages: list[Message], count_tokens: TokenCounter
    ) -> tuple[list[Message], int]:
        """The new conversation and the prompt tokens added."""
        ...

    def apply_completion(self, prompt: str, count_tokens: TokenCounter) -> tuple[str, int]:
        """The new completion prompt and the prompt tokens added."""
        ...


ContextBuilder = Callable[..., Any]

CONTEXT_BUILDERS: Registry[ContextBuilder] = Registry("context method")
CONTEXT_BUILDERS.register("prefix", "icul.prefix:build_prefix")
CONTEXT_BUILDERS.register("icul", "icul.context:build_icul")

__all__ = ["CONTEXT_BUILDERS", "ContextBuilder", "ContextMethod", "TokenCounter"]
