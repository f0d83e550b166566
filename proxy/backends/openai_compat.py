"""Backend for any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp server, …).

The upstream client is aiohttp: its connection pool costs the same per request at any number of
connections, while httpx's pool checks every pooled connection on every request (most of the
proxy's CPU at 32 concurrent requests).

Passthrough: a client's request goes upstream with its fields as sent (only ``model`` is
replaced by the upstream's name, the messages or prompt by the policy's); nothing is added
unless the model's config sets ``max_tokens_default``. Every field of the answer that the proxy
does not read travels back in :class:`proxy.core.types.Extra` (``Usage.extra`` for usage).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import aiohttp
from aiohttp.helpers import BasicAuth, get_env_proxy_for_url
from yarl import URL

from proxy.backends.base import Capabilities, Message, approx_token_count
from proxy.core.types import (
    NO_EXTRA, NO_FIELDS, Chunk, Extra, Fields, Generation, GenerationParams, Usage,
)
from proxy.core.config import OpenAIModelConfig
from proxy.core.errors import (
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from proxy.core.redaction import redact, register_secret


class OpenAICompatBackend:
    """Forwards requests to ``base_url``; the API key comes from an env var and is never echoed."""

    capabilities = Capabilities(max_n=128)  # the request's own limit; the upstream has its own

    def __init__(self, cfg: OpenAIModelConfig, *, public_model: str) -> None:
        self._cfg = cfg
        self._model = cfg.upstream_model or public_model
        self._api_key = self._read_key(cfg.api_key_env)
        self._base_url = cfg.base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # sock_read bounds the wait for each next byte, not the whole (possibly streamed)
        # answer; connect bounds the wait for a free pooled connection plus the TCP connect.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=cfg.read_timeout_s, sock_connect=cfg.connect_timeout_s,
            sock_read=cfg.read_timeout_s,
        )
        self._proxy, self._proxy_auth = _env_proxy(self._base_url)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session of the running event loop (made on first use: a session is loop-bound)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._cfg.max_connections, limit_per_host=0,
                keepalive_timeout=self._cfg.keepalive_timeout_s,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout
            )
            self._session_loop = loop
        return self._session

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
        register_secret(key)
        return key

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self._cfg.base_url!r}, model={self._model!r})"

    # ------------------------------------------------------------------ requests

    def _body(self, params: GenerationParams, **payload: Any) -> dict[str, Any]:
        """The upstream request: the client's fields as sent (a request made in code: its
        typed fields), ``model`` replaced, then ``payload`` (messages or prompt, stream)."""
        fields = params.sent if params.sent is not None else _typed_fields(params)
        body: dict[str, Any] = {**fields, "model": self._model, **payload}
        default = self._cfg.max_tokens_default
        if default is not None and "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = default
        return body

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        data = await self._post("/chat/completions", self._body(params, messages=list(messages)))
        return _generation(data, "message", "content")

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        data = await self._post("/completions", self._body(params, prompt=prompt))
        return _generation(data, "text")

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
        if self._session is not None and not self._session.closed:
            await self._session.close()

    # ------------------------------------------------------------------ transport

    @asynccontextmanager
    async def _request(self, path: str, body: dict[str, Any], *,
                       streamed: bool) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body``; upstream HTTP errors and transport failures become ProxyErrors."""
        what = "stream" if streamed else "request"
        try:
            async with await self._send(path, body) as response:
                if response.status >= 400:
                    text = (await response.read()).decode("utf-8", "replace")
                    raise self._mapped_error(response.status, text, response.headers)
                yield response
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeoutError("the upstream model timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the upstream {what} failed ({type(exc).__name__})") from None

    async def _send(self, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST and read the response head. A pooled connection the upstream closed as the
        request went out (its idle timeout racing ours) fails before any answer; such a request
        is sent once more, as it never reached a handler (one an upstream dropped while working
        on it is resent too: a generation has no side effects)."""
        post = partial(self._client().post, self._base_url + path, json=body,
                       proxy=self._proxy, proxy_auth=self._proxy_auth)
        try:
            return await post()
        except aiohttp.ServerDisconnectedError:
            return await post()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._request(path, body, streamed=False) as response:
            raw = await response.read()
        return _json_object(raw, "model returned a body")

    async def _stream(self, path: str, body: dict[str, Any], *, chat: bool) -> AsyncIterator[Chunk]:
        async with self._request(path, body, streamed=True) as response:
            async for chunk in _sse_chunks(response.content, chat=chat):
                yield chunk

    def _mapped_error(self, status: int, text: str, headers: Mapping[str, str]) -> ProxyError:
        message = _upstream_message(text)
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


def _typed_fields(params: GenerationParams) -> dict[str, Any]:
    """The fields of a request made in code (no client body): its unknown fields, then the
    typed ones that are set."""
    typed = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "user": params.user,
    }
    return {**params.extra, **{k: v for k, v in typed.items() if v is not None}}


def _env_proxy(url: str) -> tuple[URL | None, BasicAuth | None]:
    """The proxy ``HTTP(S)_PROXY``/``NO_PROXY`` name for ``url``, looked up once (aiohttp's
    ``trust_env`` would read the environment and ``~/.netrc`` on every request)."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


def _upstream_message(text: str) -> str:
    """The message of an upstream error body, redacted (upstreams echo credentials)."""
    try:
        return redact(str(json.loads(text)["error"]["message"]))
    except (ValueError, KeyError, TypeError):
        return redact(text[:200]) or "no message"


def _choices(data: dict[str, Any]) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if (not isinstance(choices, list) or not choices
            or not all(isinstance(choice, dict) for choice in choices)):
        raise UpstreamError("the upstream model returned no choices")
    return choices


_SURROGATE = re.compile("[\ud800-\udfff]")


def _string(value: Any, field: str) -> str | None:
    """An upstream string field; UpstreamError (502) when it is not a string or holds a lone
    surrogate (JSON can escape one; no client, guard or encoder can use it)."""
    if value is None or (isinstance(value, str) and not _SURROGATE.search(value)):
        return value
    kind = "not valid Unicode" if isinstance(value, str) else f"a JSON {type(value).__name__}"
    raise UpstreamError(f"the upstream model returned a {field} that is {kind}")


def _choice_text(choice: dict[str, Any], *path: str) -> str:
    """The text at ``path`` of a choice ('' when absent), checked by :func:`_string`."""
    value: Any = choice
    for key in path:
        if value is None:
            break
        if not isinstance(value, dict):
            raise UpstreamError(f"the upstream model returned a malformed {'.'.join(path)}")
        value = value.get(key)
    return _string(value, ".".join(path)) or ""


def _parsed_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    try:
        counts = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError, OverflowError):
        raise UpstreamError("the upstream model returned malformed usage") from None
    return Usage(*counts, _unread(usage, _USAGE_READ))


# What the proxy reads or writes itself at each level of an answer; every other field is passed
# through. A null the proxy writes at that place anyway (a choice's ``logprobs``, a message's
# ``refusal``) is left out: there is nothing to pass.
_TOP_READ = frozenset({"id", "object", "created", "model", "choices", "usage"})
_CHOICE_READ = frozenset({"index", "message", "delta", "text", "finish_reason"})
_MESSAGE_READ = frozenset({"role", "content"})
_DELTA_READ = frozenset({"content"})  # a delta's role passes: it marks the opening event
_USAGE_READ = frozenset({"prompt_tokens", "completion_tokens"})


def _unread(data: dict[str, Any], read: frozenset[str], null: str = "") -> Fields:
    fields = {k: v for k, v in data.items() if k not in read and not (k == null and v is None)}
    return fields or NO_FIELDS


def _extra(data: dict[str, Any], choice: dict[str, Any], part: str) -> Extra:
    """The fields of an answer (``data``), its ``choice`` and the choice's ``part`` (message
    or delta) that the proxy passes through. A null content (an answer of tool calls only)
    is passed as the upstream wrote it; the proxy would write a string."""
    message = choice.get(part)
    if isinstance(message, dict):  # a delta has no null of the proxy's own
        read, null = (_MESSAGE_READ, "refusal") if part == "message" else (_DELTA_READ, "")
        fields: Fields = {
            k: v for k, v in message.items()
            if (k not in read or (k == "content" and v is None)) and not (k == null and v is None)
        } or NO_FIELDS
    else:
        fields = NO_FIELDS
    extra = Extra(_unread(data, _TOP_READ), _unread(choice, _CHOICE_READ, "logprobs"), fields)
    return extra if extra else NO_EXTRA


def _index(choice: dict[str, Any], position: int) -> int:
    index = choice.get("index", position)
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def _generation(data: dict[str, Any], *path: str) -> Generation:
    """A non-streamed answer: each choice's text at ``path``, finish reason, index and fields
    passed through (the answer's own on the first), and the usage."""
    choices = _choices(data)
    texts = [_choice_text(choice, *path) for choice in choices]
    usage = _parsed_usage(data.get("usage")) or Usage(0, sum(map(approx_token_count, texts)))
    generations = [
        Generation(text, _string(choice.get("finish_reason"), "finish_reason") or "stop", usage,
                   _extra(data if position == 0 else {}, choice, path[0]),
                   _index(choice, position))
        for position, (choice, text) in enumerate(zip(choices, texts, strict=True))
    ]
    return replace(generations[0], more=tuple(generations[1:]))


_DONE = Chunk()  # returned by _parse_line for ``data: [DONE]``


async def _sse_chunks(content: aiohttp.StreamReader, *, chat: bool) -> AsyncIterator[Chunk]:
    """The upstream's SSE body as chunks, parsed as the bytes arrive (lines of any length); a
    stream that ends without ``[DONE]`` is an error. Text-only events of one choice that
    arrive in one read become one chunk: they reach the client at the same moment either way,
    in fewer writes (a busy proxy reads several at once)."""
    pending = b""
    async for data in content.iter_any():
        *lines, pending = (pending + data).split(b"\n")
        parsed: list[Chunk] = []
        end: Chunk | UpstreamError | None = None  # _DONE, or the error of a broken event
        try:
            for line in lines:
                chunks = _parse_line(line, chat=chat)
                if chunks is _DONE:
                    end = chunks
                    break
                parsed.extend(chunks)
        except UpstreamError as exc:  # what came before a broken event still goes out first
            end = exc
        for chunk in _joined(parsed):
            yield chunk
        if isinstance(end, UpstreamError):
            raise end
        if end is _DONE:
            return
    if _parse_line(pending, chat=chat) is _DONE:
        return
    raise UpstreamError("the upstream stream ended before [DONE]")


def _joined(chunks: list[Chunk]) -> list[Chunk]:
    """``chunks`` with each run of text-only chunks of one choice joined into one."""
    out: list[Chunk] = []
    for chunk in chunks:
        if out and _text_only(chunk) and _text_only(out[-1]) and chunk.index == out[-1].index:
            out[-1] = replace(chunk, text=out[-1].text + chunk.text)
        else:
            out.append(chunk)
    return out


def _text_only(chunk: Chunk) -> bool:
    return chunk.finish_reason is None and chunk.usage is None and not chunk.extra


def _parse_line(raw: bytes, *, chat: bool) -> list[Chunk] | Chunk:
    """The chunks of one ``data:`` line, :data:`_DONE` for the end, none for any other line
    (blank separators, ``: keep-alive`` comments, ``event:`` lines)."""
    line = raw.rstrip(b"\r")
    if not line.startswith(b"data:"):
        return []
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return _DONE
    data = _json_object(payload, "stream sent an event")
    if "error" in data:
        raise UpstreamError(f"upstream: {_upstream_message(json.dumps(data))}")
    return _chunks_of_event(data, chat=chat)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or an UpstreamError saying "the upstream {what} that is …"."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise UpstreamError(f"the upstream {what} that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"the upstream {what} that is not a JSON object")
    return data


def _chunks_of_event(data: dict[str, Any], *, chat: bool) -> list[Chunk]:
    """One chunk per choice of a stream event (the usage, if any, on the first)."""
    usage = _parsed_usage(data.get("usage"))
    if usage is not None:
        usage = replace(usage, event=_unread(data, _TOP_READ))
    choices = data.get("choices") or []
    if not isinstance(choices, list) or not choices:
        return [Chunk(usage=usage)]
    part = "delta" if chat else "text"
    chunks = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise UpstreamError("the upstream stream sent a malformed choice")
        text = _choice_text(choice, "delta", "content") if chat else _choice_text(choice, "text")
        finish = _string(choice.get("finish_reason"), "finish_reason")
        chunks.append(Chunk(text, finish, usage if position == 0 else None,
                            _extra(data, choice, part), _index(choice, position)))
    return chunks
