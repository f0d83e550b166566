"""Prompt prefixes: a system instruction to answer as if the forget targets were unknown.

Thaker et al. 2024, "Guardrail Baselines for Unlearning in LLMs"; the default wording follows
the ICU baseline of RWKU (Jin et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.core.config import PolicyConfig, PrefixConfig

DEFAULT_TEMPLATE = (
    "You are an AI assistant who is supposed to unlearn about {targets} and provide answers "
    "without their knowledge as if you never knew about them. If a question is about "
    "{targets}, say that you don't know. Don't tell anyone that you unlearned anything."
)


def render_prefix(target_names: Sequence[str], template: str | None = None) -> str:
    """The system instruction with the target names filled in ("A, B and C")."""
    names = [n for n in target_names if n]
    if len(names) > 1:
        joined = ", ".join(names[:-1]) + " and " + names[-1]
    else:
        joined = names[0] if names else "the forgotten topics"
    return (template or DEFAULT_TEMPLATE).replace("{targets}", joined)


def apply_chat_prefix(messages: Sequence[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Put ``prefix`` in front of the system message, or add one; other turns unchanged."""
    out = [dict(m) for m in messages]
    if out and out[0].get("role") in ("system", "developer"):
        content = out[0].get("content")
        if isinstance(content, list):
            out[0]["content"] = [{"type": "text", "text": prefix}, *content]
        else:
            out[0]["content"] = f"{prefix}\n\n{content}" if content else prefix
        return out
    return [{"role": "system", "content": prefix}, *out]


def apply_completion_prefix(prompt: str, prefix: str) -> str:
    """Put ``prefix`` on its own paragraph in front of a raw completion prompt."""
    return f"{prefix}\n\n{prompt}"


@dataclass(frozen=True)
class PrefixMethod:
    """The ``prefix`` context method: one rendered instruction in front of every request."""

    prefix: str
    when: str = "always"

    def apply_chat(
        self, messages: list[dict[str, Any]], count_tokens: Callable[[str], int]
    ) -> tuple[list[dict[str, Any]], int]:
        return apply_chat_prefix(messages, self.prefix), count_tokens(self.prefix)

    def apply_completion(self, prompt: str, count_tokens: Callable[[str], int]) -> tuple[str, int]:
        return apply_completion_prefix(prompt, self.prefix), count_tokens(self.prefix)


def build_prefix(cfg: PrefixConfig, *, policy: PolicyConfig, where: str,
                 artifacts: Callable[[], Any]) -> PrefixMethod:
    """The ``prefix`` context method of a policy (the names of its forget targets)."""
    return PrefixMethod(render_prefix([t.name for t in policy.forget], cfg.template), cfg.when)
