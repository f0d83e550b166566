"""ICUL context builders: forget demos with altered answers, then retain demos, then the query.

Pawelczyk et al. 2023, *In-Context Unlearning: Language Models as Few-Shot Unlearners* (ICUL):
without touching weights, show the model the forget examples with flipped (here: refused or
wrong) answers, followed by ``s`` correctly answered retain examples, then the real query. The
demonstrations themselves are chosen elsewhere (e.g. ``icul.erase``).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from icul.errors import InvalidInputError

ForgetAnswer = Literal["refusal", "perturbed"]
TokenCounter = Callable[[str], int]

DEFAULT_REFUSAL = "I'm sorry, but I don't have any information about that."
DEFAULT_TEMPLATE = "Question: {question}\nAnswer: {answer}\n\n"
_LEADING_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class Demonstration:
    """One question/answer example; ``perturbed_answer`` is a wrong answer for forget demos."""

    question: str
    answer: str
    perturbed_answer: str | None = None


def forget_answer_text(
    demo: Demonstration, *, mode: ForgetAnswer = "refusal", refusal_text: str = DEFAULT_REFUSAL
) -> str:
    """The altered answer shown for a forget demonstration.

    Raises:
        InvalidInputError: unknown ``mode``, or ``"perturbed"`` without a perturbed answer.
    """
    if mode == "refusal":
        return refusal_text
    if mode == "perturbed":
        if demo.perturbed_answer is None:
            raise InvalidInputError(f"forget demo {demo.question!r} has no perturbed_answer")
        return demo.perturbed_answer
    raise InvalidInputError(f"forget_answer must be 'refusal' or 'perturbed'; got {mode!r}")


def _pairs(
    forget: Sequence[Demonstration],
    retain: Sequence[Demonstration],
    mode: ForgetAnswer,
    refusal_text: str,
) -> list[tuple[str, str]]:
    altered = [
        (d.question, forget_answer_text(d, mode=mode, refusal_text=refusal_text)) for d in forget
    ]
    return altered + [(d.question, d.answer) for d in retain]


def build_chat_messages(
    messages: Sequence[Mapping[str, Any]],
    forget: Sequence[Demonstration],
    retain: Sequence[Demonstration],
    *,
    forget_answer: ForgetAnswer = "refusal",
    refusal_text: str = DEFAULT_REFUSAL,
) -> list[dict[str, Any]]:
    """Return a new message list: leading system/developer messages, then each forget demo as a
    user/assistant turn with an altered answer, then the retain demos, then the rest.

    Raises:
        InvalidInputError: a message without a string ``role``, or a bad ``forget_answer``.
    """
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidInputError(f"messages[{index}] must be an object with a string 'role'")
    head = 0
    while head < len(messages) and messages[head]["role"] in _LEADING_ROLES:
        head += 1
    turns: list[dict[str, Any]] = []
    for question, answer in _pairs(forget, retain, forget_answer, refusal_text):
        turns.append({"role": "user", "content": question})
        turns.append({"role": "assistant", "content": answer})
    return [dict(m) for m in messages[:head]] + turns + [dict(m) for m in messages[head:]]


def _parse_template(template: str) -> list[tuple[str, str | None]]:
    """Split ``template`` into (literal, field) parts; it must use {question} then {answer}."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"malformed template {template!r}: {exc}") from None
    fields = [field for _, field, _, _ in parts if field is not None]
    if fields != ["question", "answer"] or any(spec or conv for _, _, spec, conv in parts):
        raise InvalidInputError(
            f"template must contain plain {{question}} then {{answer}} once each; got {template!r}"
        )
    return [(lit, field) for lit, field, _, _ in parts]


def _render(parts: list[tuple[str, str | None]], question: str, answer: str | None) -> str:
    """Fill ``parts``; with ``answer=None`` stop at the answer slot, dropping trailing spaces."""
    out: list[str] = []
    for literal, field in parts:
        out.append(literal)
        if field == "question":
            out.append(question)
        elif field == "answer":
            if answer is None:
                return "".join(out).rstrip(" ")
            out.append(answer)
    return "".join(out)


def build_completion_prompt(
    prompt: str,
    forget: Sequence[Demonstration],
    retain: Sequence[Demonstration],
    *,
    template: str = DEFAULT_TEMPLATE,
    wrap_query: bool = True,
    forget_answer: ForgetAnswer = "refusal",
    refusal_text: str = DEFAULT_REFUSAL,
) -> str:
    """Render a few-shot text prompt: forget demos (altered answers), retain demos, then the query.

    With ``wrap_query`` the raw prompt is put in the question slot and the template is cut at the
    answer slot (``"Question: <prompt>\\nAnswer:"``), so the model answers in the demonstrated
    format; without it the prompt is appended verbatim (already formatted, or a pure continuation).

    Raises:
        InvalidInputError: a template without exactly {question} then {answer}, or a bad mode.
    """
    parts = _parse_template(template)
    pairs = _pairs(forget, retain, forget_answer, refusal_text)
    shots = "".join(_render(parts, question, answer) for question, answer in pairs)
    return shots + (_render(parts, prompt, None) if wrap_query else prompt)


def _content_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def count_added_tokens(
    original: str | Sequence[Mapping[str, Any]],
    augmented: str | Sequence[Mapping[str, Any]],
    count_tokens: TokenCounter,
) -> int:
    """Prompt tokens ICUL added: for text prompts the difference of the two counts, for chat the
    difference of the message contents' counts (chat-template overhead is not counted).

    Raises:
        InvalidInputError: one side is text and the other a message list.
    """
    mixed = InvalidInputError("original and augmented must both be text or both be messages")
    if isinstance(original, str):
        if not isinstance(augmented, str):
            raise mixed
        return count_tokens(augmented) - count_tokens(original)
    if isinstance(augmented, str):
        raise mixed
    before = sum(count_tokens(_content_text(m)) for m in original)
    return sum(count_tokens(_content_text(m)) for m in augmented) - before
