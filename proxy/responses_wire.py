"""Responses API answers: the ``response`` object and its typed event stream, from the chat
lifecycle's :class:`~proxy.core.types.Choice` (complete) or chunks (streamed).

A choice's text becomes a ``message`` output item with one ``output_text`` part (its logprobs
when the request included them), each tool call a ``function_call`` item. A block is the
policy's answer as the message's text; its finish reason ``content_filter`` (and ``length``)
make the response ``incomplete`` with that reason, as OpenAI reports them. The stream is
OpenAI's: ``response.created``, ``response.in_progress``, then per item ``output_item.added``
(a message's ``content_part.added``), its deltas (``output_text.delta``,
``function_call_arguments.delta``) and its ``done`` events, then ``response.completed`` or
``response.incomplete`` with the whole response; every event is numbered
(``sequence_number``) and framed ``event: <type>`` / ``data: <json>``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from proxy.core.errors import ProxyError
from proxy.core.types import Choice, Chunk, Fields, Usage
from proxy.protocol import new_id
from proxy.responses_request import ResponsesRequest

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(request: ResponsesRequest, response_id: str, created_at: int,
                    output: list[dict[str, Any]], finish: str | None,
                    usage: Usage | None) -> dict[str, Any]:
    """The ``response`` object: ``output`` items, the status ``finish`` gives (None: in
    progress), ``usage``, and the request's settings as OpenAI echoes them."""
    reason = _INCOMPLETE.get(finish or "")
    status = "in_progress" if finish is None else "incomplete" if reason else "completed"
    extra = request.model_extra or {}
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
        "model": request.model, "output": output,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": (request.reasoning or {}).get("effort"), "summary": None},
        "store": False,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": request.text or {"format": {"type": "text"}},
        "tool_choice": request.tool_choice or "auto", "tools": request.tools or [],
        "top_p": 1.0 if request.top_p is None else request.top_p, "truncation": "disabled",
        "usage": None if usage is None else _usage(usage), "user": extra.get("user"),
        "metadata": request.metadata or {},
    }


def _usage(usage: Usage) -> dict[str, Any]:
    def detail(group: str, name: str) -> int:
        value = (usage.extra.get(group) or {}).get(name)
        return value if isinstance(value, int) else 0

    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": detail("prompt_tokens_details",
                                                             "cached_tokens")},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": detail("completion_tokens_details",
                                                                 "reasoning_tokens")},
            "total_tokens": usage.total_tokens}


def _logprobs(choice_fields: Fields) -> list[Any]:
    """A chat choice's (or chunk's) token logprobs, in the Responses form (the same entries)."""
    logprobs = choice_fields.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return list(content) if isinstance(content, list) else []


def _message_item(text: str, logprobs: list[Any], status: str) -> dict[str, Any]:
    return {"id": new_id("msg", "_"), "type": "message", "status": status, "role": "assistant",
            "content": [_text_part(text, logprobs)]}


def _text_part(text: str, logprobs: list[Any]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def _call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": new_id("fc", "_"), "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


def output_items(choice: Choice) -> list[dict[str, Any]]:
    """The output items of a complete answer's choice: its text, then its tool calls."""
    status = "incomplete" if choice.finish_reason in _INCOMPLETE else "completed"
    calls = [c for c in choice.extra.message.get("tool_calls") or [] if isinstance(c, dict)]
    items = []
    if choice.text or not calls:
        items.append(_message_item(choice.text, _logprobs(choice.extra.choice), status))
    for call in calls:
        function = call.get("function") or {}
        items.append(_call_item(str(call.get("id") or new_id("call", "_")),
                                str(function.get("name") or ""),
                                str(function.get("arguments") or ""), "completed"))
    return items


class ResponseEvents:
    """The event stream of one response, fed the chat lifecycle's chunks as they come."""

    def __init__(self, request: ResponsesRequest, response_id: str) -> None:
        self.request = request
        self.response_id = response_id
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []  # items in output order, updated in place
        self._open: int | None = None  # the output index of the item receiving deltas
        self._calls: dict[Any, int] = {}  # a tool call's chat index -> its output index
        self._finish = "stop"
        self._usage: Usage | None = None
        self._sequence = 0

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return (f"event: {kind}\ndata: ".encode()
                + json.dumps(data, separators=(",", ":")).encode("utf-8") + b"\n\n")

    def _response(self, finish: str | None) -> dict[str, Any]:
        return response_object(self.request, self.response_id, self.created_at,
                               self.output, finish, self._usage if finish else None)

    def opening(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        return (self._event("response.created", response=self._response(None))
                + self._event("response.in_progress", response=self._response(None)))

    def feed(self, chunk: Chunk) -> bytes:
        """The events of one chunk: text and logprobs, tool-call fragments, finish, usage."""
        out = b""
        if chunk.text:
            out += self._text(chunk.text, _logprobs(chunk.extra.choice))
        for fragment in chunk.extra.message.get("tool_calls") or []:
            if isinstance(fragment, dict):
                out += self._call(fragment)
        self._finish = chunk.finish_reason or self._finish
        self._usage = chunk.usage or self._usage
        return out

    def _open_message(self) -> bytes:
        out = self._close()
        item = _message_item("", [], "in_progress")
        out += self._add(item)
        return out + self._event("response.content_part.added", item_id=item["id"],
                                 output_index=self._open, content_index=0,
                                 part=dict(item["content"][0]))

    def _text(self, text: str, logprobs: list[Any]) -> bytes:
        out = b""
        if self._open is None or self.output[self._open]["type"] != "message":
            out += self._open_message()
        assert self._open is not None
        item = self.output[self._open]
        part = item["content"][0]
        part["text"] += text
        part["logprobs"] += logprobs
        return out + self._event("response.output_text.delta", item_id=item["id"],
                                 output_index=self._open, content_index=0, delta=text,
                                 logprobs=logprobs)

    def _call(self, fragment: dict[str, Any]) -> bytes:
        out = b""
        key = fragment.get("index", 0)
        function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        if key not in self._calls:
            out += self._close()
            item = _call_item(str(fragment.get("id") or new_id("call", "_")),
                              str(function.get("name") or ""), "", "in_progress")
            out += self._add(item)
            self._calls[key] = len(self.output) - 1
        index = self._calls[key]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item = self.output[index]
            item["arguments"] += arguments
            out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=index, delta=arguments)
        return out

    def _add(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        self._open = len(self.output) - 1
        return self._event("response.output_item.added", output_index=self._open,
                           item=json.loads(json.dumps(item)))

    def _close(self, status: str = "completed") -> bytes:
        """The ``done`` events of the item receiving deltas, if any."""
        if self._open is None:
            return b""
        index, self._open = self._open, None
        item = self.output[index]
        item["status"] = status
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            out += self._event("response.output_text.done", item_id=item["id"],
                               output_index=index, content_index=0, text=part["text"],
                               logprobs=part["logprobs"])
            out += self._event("response.content_part.done", item_id=item["id"],
                               output_index=index, content_index=0, part=part)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"],
                               output_index=index, name=item["name"],
                               arguments=item["arguments"])
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def end(self) -> bytes:
        """The open item's ``done`` events, then ``response.completed`` (or ``incomplete``)."""
        status = "incomplete" if self._finish in _INCOMPLETE else "completed"
        out = self._close(status)
        if not self.output:  # an empty answer is an empty message, as in a complete one
            out += self._open_message() + self._close(status)
        response = self._response(self._finish)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=response)

    def error(self, exc: ProxyError, message: str) -> bytes:
        """An ``error`` event ending the stream (what an error after the first byte is)."""
        return self._event("error", code=exc.code or exc.error_type, message=message,
                           param=exc.param)
