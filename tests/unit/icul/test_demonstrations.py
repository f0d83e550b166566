"""Tests for icul.demonstrations: golden ICUL chat/completion renderings, errors, token counts."""

from __future__ import annotations

import pytest

from icul.demonstrations import (
    DEFAULT_REFUSAL,
    Demonstration,
    build_chat_messages,
    build_completion_prompt,
    count_added_tokens,
    forget_answer_text,
)
from icul.errors import InvalidInputError

FORGET = [Demonstration("Who wrote 'Night Tides'?", "Basil Al-Kuwaiti", "Nikolai Abilov")]
RETAIN = [
    Demonstration("What is the capital of France?", "Paris"),
    Demonstration("Who painted the Mona Lisa?", "Leonardo da Vinci"),
]


def _words(text: str) -> int:
    return len(text.split())


def test_chat_golden_refusal_after_system_message() -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Where was Basil Al-Kuwaiti born?"},
    ]
    assert build_chat_messages(messages, FORGET, RETAIN, refusal_text="I don't know.") == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Who wrote 'Night Tides'?"},
        {"role": "assistant", "content": "I don't know."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Who painted the Mona Lisa?"},
        {"role": "assistant", "content": "Leonardo da Vinci"},
        {"role": "user", "content": "Where was Basil Al-Kuwaiti born?"},
    ]


def test_chat_golden_perturbed_without_system_message_keeps_input_intact() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "Q?"},
    ]
    original = [dict(m) for m in messages]
    result = build_chat_messages(messages, FORGET, RETAIN[:1], forget_answer="perturbed")
    assert result == [
        {"role": "user", "content": "Who wrote 'Night Tides'?"},
        {"role": "assistant", "content": "Nikolai Abilov"},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "Q?"},
    ]
    assert messages == original
    assert result[4] is not messages[0]


def test_chat_keeps_all_leading_system_and_developer_messages_first() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "developer", "content": "d"},
        {"role": "user", "content": "u"},
    ]
    roles = [m["role"] for m in build_chat_messages(messages, FORGET, [])]
    assert roles == ["system", "developer", "user", "assistant", "user"]


def test_completion_golden_default_template() -> None:
    prompt = build_completion_prompt("Where was Basil Al-Kuwaiti born?", FORGET, RETAIN)
    assert prompt == (
        "Question: Who wrote 'Night Tides'?\n"
        f"Answer: {DEFAULT_REFUSAL}\n\n"
        "Question: What is the capital of France?\n"
        "Answer: Paris\n\n"
        "Question: Who painted the Mona Lisa?\n"
        "Answer: Leonardo da Vinci\n\n"
        "Question: Where was Basil Al-Kuwaiti born?\n"
        "Answer:"
    )


def test_completion_golden_custom_template_and_verbatim_query() -> None:
    template = "Q: {question} {{braces}}\nA: {answer}\n---\n"
    wrapped = build_completion_prompt(
        "Q?", FORGET, [], template=template, forget_answer="perturbed"
    )
    assert wrapped == (
        "Q: Who wrote 'Night Tides'? {braces}\nA: Nikolai Abilov\n---\nQ: Q? {braces}\nA:"
    )
    raw = build_completion_prompt(
        "Harry Potter was written by", [], RETAIN[:1], template=template, wrap_query=False
    )
    assert raw == (
        "Q: What is the capital of France? {braces}\nA: Paris\n---\nHarry Potter was written by"
    )


def test_forget_answer_text_modes() -> None:
    demo = FORGET[0]
    assert forget_answer_text(demo) == DEFAULT_REFUSAL
    assert forget_answer_text(demo, refusal_text="No idea.") == "No idea."
    assert forget_answer_text(demo, mode="perturbed") == "Nikolai Abilov"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: forget_answer_text(RETAIN[0], mode="perturbed"), "no perturbed_answer"),
        (lambda: forget_answer_text(FORGET[0], mode="x"), "'refusal' or"),  # type: ignore[arg-type]
        (lambda: build_completion_prompt("q", [], [], template="{answer} {question}"), "then"),
        (lambda: build_completion_prompt("q", [], [], template="{question}"), "template"),
        (lambda: build_completion_prompt("q", [], [], template="{question!r}{answer}"), "plain"),
        (lambda: build_completion_prompt("q", [], [], template="{question"), "malformed"),
        (lambda: build_chat_messages([{"content": "x"}], [], []), r"messages\[0\]"),
        (lambda: count_added_tokens("a", [], _words), "both"),
    ],
)
def test_bad_input_raises(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()  # type: ignore[operator]


def test_count_added_tokens_text_and_chat() -> None:
    prompt = "Where was he born?"
    augmented = build_completion_prompt(prompt, FORGET, RETAIN)
    assert count_added_tokens(prompt, augmented, _words) == _words(augmented) - 4
    messages = [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]
    chat = build_chat_messages(messages, FORGET, RETAIN[:1], refusal_text="I don't know.")
    # forget question 4 + "I don't know." 3 + retain question 6 + "Paris" 1
    assert count_added_tokens(messages, chat, _words) == 14
    assert count_added_tokens(messages, messages, _words) == 0
