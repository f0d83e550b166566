"""Backend for any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp server, …)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from proxy.backends.base import (
    Capabilities,
    Chunk,
    Generation,
    GenerationParams,
    Message,
    Usage,
    approx_token_count,
    check_n,
)
from proxy.config import OpenAIModelConfig
from proxy.errors import (
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)


class OpenAICompatBackend:
    """Forwards requests to ``base_url``; the API key comes from an env var and is never echoed."""

    capabilities = Capabilities(max_n=1)

    def __init__(self, cfg: OpenAIModelConfig, *, public_model: str) -> None:
        self._cfg = cfg
        self._model = cfg.upstream_model or public_model
        self._api_key = self._read_key(cfg.api_key_env)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
        self._client = httpx.AsyncClient(
            base_url=cfg.base_url.rstrip("/"), headers=headers, timeout=timeout
        )

    @classmethod
    def from_config(cls, cfg: OpenAIModelConfig, *, public_model: str) -> OpenAICompatBackend:
        return cls(cfg, public_model=public_model)

    @staticmethod
    def _read_key(env_name: str | None) -> str | None:
        if env_name is None:
            return None
        key = os.environ.get(env_name)
        if not key:
            raise ConfigError(f"api_key_env: environment variable {env_name!r} is not set")
        return key

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self._cfg.base_url!r}, model={self._model!r})"

    # ------------------------------------------------------------------ requests

    def _body(self, params: GenerationParams, **payload: Any) -> dict[str, Any]:
        check_n(params, self.capabilities)
        body: dict[str, Any] = {**params.extra, "model": self._model, **payload}
        optional = {
            "max_tokens": params.max_tokens or self._cfg.max_tokens_default,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop) or None,
            "seed": params.seed,
            "user": params.user,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        data = await self._post("/chat/completions", self._body(params, messages=list(messages)))
        choice = _first_choice(data)
        text = (choice.get("message") or {}).get("content") or ""
        return Generation(text, choice.get("finish_reason") or "stop", _usage(data, text))

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        data = await self._post("/completions", self._body(params, prompt=prompt))
        choice = _first_choice(data)
        text = choice.get("text") or ""
        return Generation(text, choice.get("finish_reason") or "stop", _usage(data, text))

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]:
        body = self._body(params, messages=list(messages), stream=True)
        return self._stream("/chat/completions", body, chat=True)

    def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self._stream("/completions", self._body(params, prompt=prompt, stream=True), chat=False)

    def count_tokens(self, text: str) -> int:
        return approx_token_count(text)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ transport

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.TimeoutException:
            raise UpstreamTimeoutError("the upstream model timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach the upstream model ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise self._mapped_error(response.status_code, response.text, response.headers)
        try:
            data = response.json()
        except ValueError:
            raise UpstreamError("the upstream model returned a body that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError("the upstream model returned an unexpected JSON body")
        return data

    async def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Chunk]:
        body.setdefault("stream_options", {"include_usage": True})
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise self._mapped_error(response.status_code, text, response.headers)
                async for chunk in _parse_sse(response.aiter_lines(), chat=chat):
                    yield chunk
        except httpx.TimeoutException:
            raise UpstreamTimeoutError("the upstream model timed out") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream stream failed ({type(exc).__name__})") from None

    def _mapped_error(self, status: int, text: str, headers: httpx.Headers) -> ProxyError:
        message = _upstream_message(text)
        if self._api_key:
            message = message.replace(self._api_key, "***")
        if status in (401, 403):
            return UpstreamError("the upstream model rejected the proxy's credentials")
        if status == 404:
            return NotFoundError(f"upstream: {message}")
        if status == 429:
            retry = {"retry-after": headers["retry-after"]} if "retry-after" in headers else {}
            return RateLimitError(f"upstream: {message}", headers=retry)
        if 400 <= status < 500:
            return InvalidRequestError(f"upstream: {message}")
        return UpstreamError(f"the upstream model failed with HTTP {status}")


def _upstream_message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text[:200] or "no message"


def _first_choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("the upstream model returned no choices")
    return choices[0]


def _usage(data: dict[str, Any], text: str, prompt_tokens: int = 0) -> Usage:
    usage = data.get("usage")
    if isinstance(usage, dict):
        return Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    return Usage(prompt_tokens, approx_token_count(text))


async def _parse_sse(lines: AsyncIterator[str], *, chat: bool) -> AsyncIterator[Chunk]:
    """Turn upstream SSE lines into chunks; a stream that ends without ``[DONE]`` is an error."""
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ``: keep-alive`` comments, ``event:`` lines
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            data = json.loads(payload)
        except ValueError:
            raise UpstreamError("the upstream stream sent an event that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError("the upstream stream sent an unexpected event")
        if "error" in data:
            raise UpstreamError(f"upstream: {_upstream_message(json.dumps(data))}")
        yield _chunk_from_event(data, chat=chat)
    raise UpstreamError("the upstream stream ended before [DONE]")


def _chunk_from_event(data: dict[str, Any], *, chat: bool) -> Chunk:
    usage = data.get("usage")
    parsed_usage = (
        Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        if isinstance(usage, dict)
        else None
    )
    choices = data.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return Chunk(usage=parsed_usage)
    choice = choices[0]
    text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
    return Chunk(text or "", choice.get("finish_reason"), parsed_usage)
