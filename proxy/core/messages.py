"""Reading chat messages: the text of a turn, the user's turns, and every other text a model
reads (other roles, names, tool calls and definitions, non-text content parts)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

Message = dict[str, Any]


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


# Keys whose strings the model does not read as text: roles, part types, ids, and binary or
# URL payloads (an image's URL, base64 audio or file data).
_NOT_TEXT = frozenset(
    {"role", "type", "id", "tool_call_id", "file_id", "detail", "format", "url", "data",
     "file_data"}
)


def _strings(value: object, key: str = "") -> Iterator[str]:
    """The non-blank strings in a JSON value, skipping those under :data:`_NOT_TEXT` keys."""
    if key in _NOT_TEXT:
        return
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


def other_texts(messages: Sequence[Message]) -> list[str]:
    """Every text the model will read that :func:`user_turns` leaves out, in order.

    The turns of every other role (system, developer, assistant, tool, and the pseudo-turns a
    request adds for tool definitions or a completion ``suffix``), with their tool calls and
    arguments; the ``name`` and any other field of a user turn; and the parts of a user turn's
    content other than its ``text`` (a file name, a refusal, an unknown part type).
    """
    texts: list[str] = []
    for message in messages:
        if message.get("role") != "user":
            texts.extend(_strings(message))
            continue
        texts.extend(_strings({k: v for k, v in message.items() if k != "content"}))
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    texts.extend(_strings({k: v for k, v in part.items() if k != "text"}))
    return list(dict.fromkeys(texts))
