"""OpenAI wire models: requests parsed from clients and responses/chunks sent back.

Requests allow unknown fields and keep the body they were parsed from: an OpenAI-compatible
upstream gets the client's fields as sent (``GenerationParams.sent``). Responses are built as
plain dicts in exactly the shape the official SDK parses: the proxy's own keys first, in
OpenAI's order, then the upstream's other fields (:class:`proxy.core.types.Extra`) in the
upstream's order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, ValidatorFunctionWrapHandler, field_validator,
    model_validator,
)

from proxy.core.types import NO_EXTRA, Choice, Extra, GenerationParams, Usage

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _RequestBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    _sent: Mapping[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_body(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Keep the body as the client sent it, for passthrough."""
        parsed = handler(data)
        if isinstance(data, Mapping):
            parsed._sent = data
        return parsed

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    def generation_params(self) -> GenerationParams:
        """The backend-independent sampling parameters (unknown fields kept for passthrough,
        and every field as sent but the messages or prompt: ``GenerationParams.sent``)."""
        stop = self.stop if isinstance(self.stop, list) else [self.stop] if self.stop else []
        return GenerationParams(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(stop),
            seed=self.seed,
            n=self.n,
            user=self.user,
            extra=dict(self.model_extra or {}),
            sent={k: v for k, v in self._sent.items() if k not in ("messages", "prompt")},
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_RequestBase):
    messages: list[ChatMessage] = Field(min_length=1)

    def plain_messages(self) -> list[dict[str, Any]]:
        """Messages as plain dicts, as the client sent them (validated)."""
        sent = self._sent.get("messages")
        if isinstance(sent, list) and len(sent) == len(self.messages):
            return [dict(m) for m in sent]
        return [m.model_dump(exclude_unset=True) for m in self.messages]


class CompletionRequest(_RequestBase):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt is supported per request")
        return value

    @property
    def prompt_text(self) -> str:
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt


def new_id(prefix: str, separator: str = "-") -> str:
    """A fresh id as OpenAI writes them: ``chatcmpl-…``, or for the Responses API's objects
    (``separator`` ``_``) ``resp_…``, ``msg_…``, ``fc_…``."""
    return f"{prefix}{separator}{uuid.uuid4().hex[:24]}"


def usage_dict(usage: Usage) -> dict[str, Any]:
    """The ``usage`` object: the counts, then the upstream's other usage fields as sent."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        **usage.extra,
    }


def _merged(own: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``own`` with the upstream's ``extra`` fields: a field the proxy also writes keeps its
    place and takes the upstream's value, the others follow in the upstream's order."""
    if extra:
        own.update(extra)
    return own


def chat_completion(
    *, request_id: str, model: str, choices: Sequence[Choice], usage: Usage,
) -> dict[str, Any]:
    """A ``chat.completion`` object (the first choice's ``extra.top`` is the answer's)."""
    return _completion("chat.completion", request_id, model, [
        _merged({"index": choice.index,
                 "message": _merged({"role": "assistant", "content": choice.text,
                                     "refusal": None}, choice.extra.message),
                 "logprobs": None, "finish_reason": choice.finish_reason}, choice.extra.choice)
        for choice in choices
    ], usage, choices[0].extra.top)


def text_completion(
    *, request_id: str, model: str, choices: Sequence[Choice], usage: Usage,
) -> dict[str, Any]:
    """A ``text_completion`` object (the first choice's ``extra.top`` is the answer's)."""
    return _completion("text_completion", request_id, model, [
        _merged({"index": choice.index, "text": choice.text, "logprobs": None,
                 "finish_reason": choice.finish_reason}, choice.extra.choice)
        for choice in choices
    ], usage, choices[0].extra.top)


def _completion(obj: str, request_id: str, model: str, choices: list[dict[str, Any]],
                usage: Usage, top: Mapping[str, Any]) -> dict[str, Any]:
    return _merged({
        "id": request_id,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage_dict(usage),
    }, top)


class ChunkFactory:
    """Builds the stream chunks of one response (one id, one ``created``)."""

    def __init__(self, *, kind: Literal["chat", "completion"], request_id: str, model: str):
        self.kind = kind
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {
            "id": self.request_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def choice(
        self, text: str | None, finish_reason: str | None = None, *, first: bool = False,
        extra: Extra = NO_EXTRA, index: int = 0,
    ) -> dict[str, Any]:
        """A chunk with one choice (``index``); ``first`` opens a chat stream's choice with the
        assistant role; ``extra`` the upstream event's own fields."""
        if self.kind == "completion":
            choice = {"index": index, "text": text or "", "logprobs": None}
        else:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": _merged(delta, extra.message), "logprobs": None}
        choice["finish_reason"] = finish_reason
        return _merged(self._base([_merged(choice, extra.choice)]), extra.top)

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The final ``include_usage`` chunk: no choices, only usage (and the other fields of
        the upstream's usage event, ``usage.event``)."""
        return _merged({**self._base([]), "usage": usage_dict(usage)}, usage.event)
