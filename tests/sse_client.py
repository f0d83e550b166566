"""Test helper: an OpenAI endpoint's answer as the bytes a client received, and as what a client
makes of them (content pieces, finish reason, error)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Kind = Literal["chat", "completion"]
PATHS: dict[Kind, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


def request_body(kind: Kind, model: str, text: str, *, stream: bool) -> dict[str, Any]:
    """A chat request with ``text`` as its user message, or a completion with it as prompt."""
    body: dict[str, Any] = {"model": model, "stream": stream}
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


@dataclass(frozen=True)
class RawResponse:
    """Status, headers and every read of the body, exactly as they came off the socket."""

    status: int
    headers: dict[str, str]
    reads: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return b"".join(self.reads)

    def events(self) -> list[Any]:
        """The ``data:`` payloads of an SSE body, in order (``"[DONE]"`` stays a string)."""
        payloads: list[Any] = []
        for block in self.body.decode("utf-8").split("\n\n"):
            for line in block.split("\n"):
                if line.startswith("data:"):
                    data = line[5:].strip()
                    payloads.append(data if data == "[DONE]" else json.loads(data))
        return payloads


def post(url: str, kind: Kind, body: dict[str, Any], *, timeout_s: float = 120.0) -> RawResponse:
    """POST ``body`` to the ``kind`` endpoint and record the response read by read."""
    with httpx.stream("POST", url + PATHS[kind], json=body, timeout=timeout_s) as response:
        reads = tuple(response.iter_raw())
    return RawResponse(response.status_code, dict(response.headers), reads)


@dataclass(frozen=True)
class Received:
    """What a client makes of a response: the text of each content event (of a plain answer:
    its one text), the finish reason, and the error (an error event, or a non-200 envelope)."""

    contents: tuple[str, ...]
    finish_reason: str | None
    error: dict[str, Any] | None

    @property
    def text(self) -> str:
        return "".join(self.contents)


def received(raw: RawResponse, kind: Kind, *, stream: bool) -> Received:
    """Parse ``raw``; a stream must end with ``[DONE]``, and only ``[DONE]`` follows an error."""
    if raw.status != 200:
        return Received((), None, json.loads(raw.body)["error"])
    if not stream:
        choice = json.loads(raw.body)["choices"][0]
        text = choice["message"]["content"] if kind == "chat" else choice["text"]
        return Received((text,), choice["finish_reason"], None)
    assert raw.headers["content-type"].startswith("text/event-stream"), raw.headers
    events = raw.events()
    assert events and events[-1] == "[DONE]", events[-3:]
    contents: list[str] = []
    finish: str | None = None
    for number, data in enumerate(events[:-1]):
        if "error" in data:
            assert number == len(events) - 2, "events after an error event"
            return Received(tuple(contents), finish, data["error"])
        for choice in data["choices"]:
            piece = choice["delta"].get("content") if kind == "chat" else choice["text"]
            if piece:
                contents.append(piece)
            finish = choice["finish_reason"] or finish
    return Received(tuple(contents), finish, None)
