"""What output guards read of an answer's choice, and how a stream holds it back for them.

A choice's *guard text* is everything the model wrote in it, in the order it arrived: the
content, then each tool call's function name and arguments (and a legacy ``function_call``'s),
with a newline between parts so no match spans two of them. JSON string escapes in arguments
are decoded (``"J\\u00f6rg"`` reads as ``Jörg``), so an escaped name is the name the client's
JSON parser will see. :class:`GuardText` builds it the same way from a whole message (a
complete answer) and from a stream's fragments, so both sides give the guards the same text.

:class:`HeldChoice` is one streamed choice's output not yet released: each upstream event's
content goes out as soon as the guards' release limit passes it, character by character, and the
event's fields (its tool-call fragments, token logprobs) with its last character, never before.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.types import NO_EXTRA, Chunk, Extra

Channel = tuple[Any, ...]  # which part of a choice a fragment belongs to
CONTENT: Channel = ("content",)

# a complete JSON string escape: a surrogate pair first, then any other
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])"
)
# what may be the start of an escape cut off at the end of a fragment
_PARTIAL = re.compile(
    r"\\(?:u(?:[dD][89abAB][0-9a-fA-F]{2}(?:\\u?[0-9a-fA-F]{0,3})?|[0-9a-fA-F]{0,3}))?\Z"
)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescaped(match: re.Match[str]) -> str:
    high, low, code, simple = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if code is not None:
        char = chr(int(code, 16))
        return match.group(0) if 0xD800 <= ord(char) <= 0xDFFF else char  # a lone surrogate
    return _SIMPLE.get(simple, simple)


def _partial_start(raw: str) -> int:
    """Where an escape cut off at the end of ``raw`` starts (``len(raw)`` when none): a
    backslash that is not itself escaped, followed by at most an incomplete escape."""
    match = _PARTIAL.search(raw, max(0, len(raw) - 12))
    while match is not None:
        start = match.start()
        run = len(raw[:start]) - len(raw[:start].rstrip("\\"))
        if run % 2 == 0:  # the backslash at ``start`` begins an escape
            return start
        match = _PARTIAL.search(raw, start + 1)
    return len(raw)


def fragments(message: Mapping[str, Any]) -> Iterable[tuple[Channel, str]]:
    """The tool-call text in a message's (or a delta's) fields: each call's function name and
    arguments, keyed by call, and a legacy ``function_call``'s."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            key = call.get("index", position)
            function = call.get("function")
            if isinstance(function, dict):
                yield from _function_parts(("tool", key), function)
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        yield from _function_parts(("function",), legacy)


def _function_parts(key: Channel, function: Mapping[str, Any]) -> Iterable[tuple[Channel, str]]:
    for part in ("name", "arguments"):
        value = function.get(part)
        if isinstance(value, str) and value:
            yield (*key, part), value


class GuardText:
    """A choice's guard text (see the module docstring), built as its parts arrive."""

    def __init__(self) -> None:
        self.text = ""
        self._channel: Channel = CONTENT
        self._raw = ""  # the arguments channel's undecoded tail (an escape cut off)

    def add(self, content: str, fields: Mapping[str, Any]) -> int:
        """Append an event's ``content`` and its message ``fields``' tool-call text; returns
        where the content starts in :attr:`text`."""
        if content:
            self._switch(CONTENT)
        start = len(self.text)
        self.text += content
        for channel, value in fragments(fields):
            self._switch(channel)
            if channel[-1] == "arguments":
                raw = self._raw + value
                cut = _partial_start(raw)
                self.text += _ESCAPE.sub(_unescaped, raw[:cut])
                self._raw = raw[cut:]
            else:
                self.text += value
        return start

    def close(self) -> str:
        """The whole text, once the choice has ended (an escape left cut off kept as sent)."""
        self.text += self._raw
        self._raw = ""
        return self.text

    def _switch(self, channel: Channel) -> None:
        if channel != self._channel:
            self.close()
            if self.text:
                self.text += "\n"
            self._channel = channel


def whole_text(text: str, fields: Mapping[str, Any]) -> str:
    """The guard text of a complete choice: its ``text`` and its message ``fields``."""
    view = GuardText()
    view.add(text, fields)
    return view.close()


@dataclass
class _Held:
    start: int  # where its content starts in the guard text
    content: str
    end: int  # where all of its guard text ends
    extra: Extra
    sent: int = 0  # how much of its content is out


class HeldChoice:
    """One streamed choice's guard text and the output the guards have not yet passed."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.view = GuardText()
        self._held: deque[_Held] = deque()

    def add(self, chunk: Chunk, *, with_fields: bool = True) -> None:
        """Add ``chunk`` to the guard text and hold its text, and its fields unless
        ``with_fields`` is false (a finish event's fields go out with the finish reason)."""
        start = self.view.add(chunk.text, chunk.extra.message)
        extra = chunk.extra if with_fields else NO_EXTRA
        self._held.append(_Held(start, chunk.text, len(self.view.text), extra))

    def release(self, limit: int) -> list[Chunk]:
        """The chunks whose guard text now ends at or before ``limit``, and the content up to
        it of the next one; runs of plain text go out as one chunk."""
        out: list[Chunk] = []
        while self._held:
            held = self._held[0]
            if held.end <= limit:
                self._held.popleft()
                self._emit(out, held.content[held.sent:], held.extra)
                continue
            settled = min(len(held.content), limit - held.start)
            if settled > held.sent:
                self._emit(out, held.content[held.sent:settled], None)
                held.sent = settled
            break
        return out

    def _emit(self, out: list[Chunk], text: str, extra: Extra | None) -> None:
        if out and not out[-1].extra and not extra:
            out[-1] = Chunk(out[-1].text + text, index=self.index)
        elif text or extra:
            out.append(Chunk(text, extra=extra or NO_EXTRA, index=self.index))
