"""``POST /v1/responses`` requests (OpenAI's Responses API), translated into chat requests.

A Responses request is answered through the chat lifecycle, so every backend serves it and the
policy's guards read it as they read a chat: ``instructions`` become a system turn, ``input``
items become turns (messages and their text/image parts, ``function_call`` items an assistant
turn's tool calls, ``function_call_output`` items tool turns), function ``tools`` and
``tool_choice`` the chat forms, ``text.format`` the ``response_format``,
``reasoning.effort`` the ``reasoning_effort``, ``max_output_tokens`` the
``max_completion_tokens``; other fields pass to the chat request as sent. What needs state or
tools the proxy does not have is a 400 naming the field, never silently dropped: background
runs, stored responses and conversations (``previous_response_id``, ``conversation``,
``store: true``, ``item_reference``), prompt templates, and built-in tools (web or file
search, computer use, code interpreter, MCP, …).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from proxy.core.errors import InvalidRequestError, UnsupportedError

# Responses fields with no chat meaning that the translation leaves out (``truncation``
# "disabled" is what a chat does anyway; ``include`` asks for output the translation writes)
_DROPPED = ("truncation", "include", "max_tool_calls")
# fields that need what the proxy does not keep or run
_STATEFUL = {
    "background": "background responses",
    "previous_response_id": "stored responses (send the whole conversation as input)",
    "conversation": "stored conversations (send the whole conversation as input)",
    "prompt": "stored prompt templates",
}
_LOGPROBS = "message.output_text.logprobs"


class ResponsesRequest(BaseModel):
    """OpenAI's Responses create request; unknown fields are allowed and passed on."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    store: bool | None = None
    metadata: dict[str, str] | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None

    def chat_body(self) -> dict[str, Any]:
        """The chat completion request that answers this one."""
        self._refuse_stateful()
        body: dict[str, Any] = {"model": self.model, "messages": self._messages()}
        if self.tools is not None:
            body["tools"] = [_chat_tool(tool, i) for i, tool in enumerate(self.tools)]
        if self.tool_choice is not None:
            body["tool_choice"] = _chat_tool_choice(self.tool_choice)
        simple = {"parallel_tool_calls": self.parallel_tool_calls,
                  "max_completion_tokens": self.max_output_tokens,
                  "temperature": self.temperature, "top_p": self.top_p,
                  "metadata": self.metadata, "store": self.store}
        body.update({k: v for k, v in simple.items() if v is not None})
        if _LOGPROBS in (self.include or []):
            body["logprobs"] = True
            if self.top_logprobs:
                body["top_logprobs"] = self.top_logprobs
        body.update(_text_options(self.text))
        if self.reasoning and self.reasoning.get("effort") is not None:
            body["reasoning_effort"] = self.reasoning["effort"]
        body.update({k: v for k, v in (self.model_extra or {}).items() if k not in _DROPPED})
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # the final event's usage
        return body

    def _refuse_stateful(self) -> None:
        extra = self.model_extra or {}
        for name, what in _STATEFUL.items():
            if extra.get(name) not in (None, False):
                raise UnsupportedError(f"{name}: {what} are not supported by this proxy",
                                       param=name)
        if self.store:
            raise UnsupportedError(
                "store: true is not supported: this proxy keeps no responses (leave store out "
                "or send false)", param="store")

    def _messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        items = ([{"role": "user", "content": self.input}] if isinstance(self.input, str)
                 else self.input)
        for position, item in enumerate(items):
            _add_item(messages, item, f"input.{position}")
        if not messages:
            raise InvalidRequestError("input: at least one input item is required", param="input")
        return messages


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    """Append the chat form of one input item (a function call joins the assistant turn of
    the calls just before it)."""
    kind = item.get("type", "message")
    if kind == "message" or ("role" in item and kind not in ("function_call",
                                                             "function_call_output")):
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise InvalidRequestError(f"{where}.role: unknown role {role!r}", param=f"{where}.role")
        messages.append({"role": role, "content": _content(item.get("content"), where, role)})
    elif kind == "function_call":
        call = {"id": _text_field(item, "call_id", where), "type": "function",
                "function": {"name": _text_field(item, "name", where),
                             "arguments": _text_field(item, "arguments", where)}}
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant" and last.get("tool_calls"):
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": _text_field(item, "call_id", where),
                         "content": _content(output, where, "tool")})
    elif kind == "reasoning":
        return  # an earlier answer's reasoning: no chat model reads it back
    else:
        raise UnsupportedError(f"{where}.type: {kind!r} input items are not supported",
                               param=f"{where}.type")


def _text_field(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where}.{name}: a string is required", param=f"{where}.{name}")
    return value


def _content(content: Any, where: str, role: str) -> str | list[dict[str, Any]]:
    """A message's content in chat form: a string, or chat content parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content: a string or a list of parts is required",
                                  param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise InvalidRequestError(f"{where}.content.{i}.text: a string is required",
                                          param=f"{where}.content.{i}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise UnsupportedError(f"{where}.content.{i}.type: {kind!r} parts are not supported",
                                   param=f"{where}.content.{i}.type")
    if role in ("assistant", "tool", "system", "developer"):  # text only, as one string
        if any(p["type"] != "text" for p in parts):
            raise UnsupportedError(f"{where}.content: images are for user turns only",
                                   param=f"{where}.content")
        return "".join(p["text"] for p in parts)
    return parts


def _chat_tool(tool: dict[str, Any], position: int) -> dict[str, Any]:
    if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
        raise UnsupportedError(
            f"tools.{position}: only function tools are supported (not {tool.get('type')!r})",
            param=f"tools.{position}")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise UnsupportedError(f"tool_choice: {choice.get('type')!r} is not supported",
                           param="tool_choice")


def _text_options(text: dict[str, Any] | None) -> dict[str, Any]:
    """``text.format`` as a chat ``response_format`` (and ``text.verbosity`` as sent)."""
    if not text:
        return {}
    options: dict[str, Any] = {}
    if "verbosity" in text:
        options["verbosity"] = text["verbosity"]
    form = text.get("format") or {"type": "text"}
    kind = form.get("type")
    if kind == "json_object":
        options["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        options["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind != "text":
        raise UnsupportedError(f"text.format: {kind!r} is not supported", param="text.format")
    return options
