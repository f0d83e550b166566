"""unlearn-proxy in front of a real OpenAI-compatible server process, and upstream faults."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from proxy.core.config import parse_config
from proxy.server import create_app
from tests.servers import (
    fake_upstream,
    free_port,
    process_output,
    process_server,
    thread_server,
    write_config,
)

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
GREEDY = {"temperature": 0.0, "max_tokens": 16}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second unlearn-proxy process serving the embedded model, requiring UPSTREAM_KEY."""
    root = tmp_path_factory.mktemp("upstream")
    config = write_config(
        root / "upstream.yaml",
        {
            "server": {"api_keys": [UPSTREAM_KEY], "state_dir": str(root / "state")},
            "models": {"gemma": {"backend": "llama_cpp"}},
        },
    )
    with process_server(config) as (url, process):
        yield url
        assert UPSTREAM_KEY not in process_output(process)


async def _faulty_chat(request: Request):  # type: ignore[no-untyped-def]
    """Fault injection: an upstream that is slow, cuts streams, or returns garbage."""
    mode = (await request.json())["model"]
    if mode == "slow":
        await asyncio.sleep(5)
    if mode == "garbage":
        return PlainTextResponse("<html>oops</html>")
    if mode == "error500":
        return JSONResponse({"error": {"message": f"boom {UPSTREAM_KEY}"}}, status_code=500)
    if mode in MALFORMED:
        return _malformed_answer(mode, stream=bool((await request.json()).get("stream")))

    async def cut() -> AsyncIterator[bytes]:
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "cut",
                 "choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b": keep-alive\n\n"
        yield f"data: {json.dumps(chunk)}\n\n".encode()

    async def broken() -> AsyncIterator[bytes]:  # a good event and a bad one in one write
        chunk = {"choices": [{"index": 0, "delta": {"content": "before "}, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\ndata: {{not json\n\n".encode()

    return StreamingResponse(broken() if mode == "broken" else cut(), media_type="text/event-stream")


MALFORMED = {  # JSON text of a well-formed answer's parts that are not
    "surrogate": ('"\\ud800"', "null"),  # a lone surrogate: not valid Unicode
    "object": ('{"text": "hi"}', "null"),
    "usage": ('"hi"', '{"prompt_tokens": "many", "completion_tokens": [1]}'),
}


def _malformed_answer(mode: str, *, stream: bool) -> Response:
    content, usage = MALFORMED[mode]
    if not stream:
        body = ('{"choices": [{"index": 0, "message": {"role": "assistant", "content": %s}, '
                '"finish_reason": "stop"}], "usage": %s}' % (content, usage))
        return Response(body, media_type="application/json")
    event = ('{"choices": [{"index": 0, "delta": {"content": %s}, "finish_reason": "stop"}], '
             '"usage": %s}' % (content, usage))
    return Response(f"data: {event}\n\ndata: [DONE]\n\n", media_type="text/event-stream")


class _ClosingUpstream:
    """Fault injection: answers the first request on each connection and keeps it open, then
    closes it, unanswered, when a second request arrives on it (the upstream's idle timeout
    firing as the proxy reuses the connection)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.closed_on_reuse = 0
        self._started = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True).start()
        self._started.wait(10)

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._started.set()
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                stream = json.loads(await reader.readexactly(length)).get("stream")
                if answered:
                    self.closed_on_reuse += 1
                    return
                writer.write(_canned_answer(stream))
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def _canned_answer(stream: bool) -> bytes:
    if stream:
        event = {"choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]}
        body, kind = f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode(), b"text/event-stream"
    else:
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                                        "finish_reason": "stop"}]}).encode()
        kind = b"application/json"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body)


@pytest.fixture(scope="module")
def closing() -> _ClosingUpstream:
    return _ClosingUpstream()


@pytest.fixture(scope="module")
def front(upstream: str, closing: _ClosingUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("front")
    dead_port = free_port()
    with thread_server(fake_upstream(_faulty_chat)) as fake_url:
        models = {
            "gemma": {"backend": "openai", "base_url": f"{upstream}/v1", "api_key_env": "UP_KEY"},
            "wrong-key": {"backend": "openai", "base_url": f"{upstream}/v1",
                          "api_key_env": "UP_WRONG", "upstream_model": "gemma"},
            "down": {"backend": "openai", "base_url": f"http://127.0.0.1:{dead_port}/v1",
                     "connect_timeout_s": 1},
            # a host that does not resolve: reachable only through the HTTP proxy set below
            "via-proxy": {"backend": "openai", "base_url": "http://upstream.invalid/v1",
                          "api_key_env": "UP_KEY", "upstream_model": "gemma"},
            "closing": {"backend": "openai", "base_url": f"http://127.0.0.1:{closing.port}/v1"},
        }
        for mode in ("slow", "garbage", "error500", "cut", "broken", *MALFORMED):
            models[mode] = {"backend": "openai", "base_url": f"{fake_url}/v1", "read_timeout_s": 0.5}
        config = parse_config({"server": {"state_dir": str(root / "state")}, "models": models})
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("UP_KEY", UPSTREAM_KEY)
            patch.setenv("UP_WRONG", "sk-not-the-right-one")
            patch.setenv("HTTP_PROXY", upstream)  # the upstream server answers proxy-form requests
            patch.setenv("NO_PROXY", "127.0.0.1,localhost")
            app = create_app(config)
        with thread_server(app) as url:
            yield url


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=180)


@pytest.mark.parametrize("model", ["gemma", "via-proxy"])  # via-proxy: through HTTP_PROXY
def test_chat_through_the_proxy_equals_direct(front: str, upstream: str, model: str) -> None:
    messages = [{"role": "user", "content": "Who wrote Harry Potter?"}]
    direct = _client(upstream, UPSTREAM_KEY).chat.completions.create(
        model="gemma", messages=messages, **GREEDY
    )
    proxied = _client(front).chat.completions.create(model=model, messages=messages, **GREEDY)
    assert proxied.choices[0].message.content == direct.choices[0].message.content
    assert proxied.usage == direct.usage


def test_stream_through_the_proxy_equals_direct(front: str, upstream: str) -> None:
    kwargs = {"model": "gemma", "prompt": "Harry Potter was written by", **GREEDY}
    direct = _client(upstream, UPSTREAM_KEY).completions.create(**kwargs)
    stream = _client(front).completions.create(stream=True, **kwargs)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert text == direct.choices[0].text
    assert "Rowling" in text


def test_chat_stream_with_usage_through_the_proxy(front: str) -> None:
    stream = _client(front).chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Say hello."}],
        stream=True, stream_options={"include_usage": True}, **GREEDY,
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("down", openai.InternalServerError, 502),
        ("garbage", openai.InternalServerError, 502),
        ("error500", openai.InternalServerError, 502),
        ("wrong-key", openai.InternalServerError, 502),
        ("slow", openai.InternalServerError, 504),
    ],
)
def test_upstream_faults_map_to_clean_errors(front: str, model: str, error: type, status: int) -> None:
    started = time.monotonic()
    with pytest.raises(error) as info:
        _client(front).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 4.0
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert info.value.body["type"] == "server_error"  # type: ignore[attr-defined]
    assert UPSTREAM_KEY not in json.dumps(info.value.body)  # type: ignore[attr-defined]
    assert "sk-not-the-right-one" not in json.dumps(info.value.body)  # type: ignore[attr-defined]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", sorted(MALFORMED))
def test_malformed_upstream_content_is_a_502(front: str, model: str, stream: bool) -> None:
    response = httpx.post(f"{front}/v1/chat/completions", timeout=30, json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "server_error" and "upstream" in error["message"], error


@pytest.mark.parametrize("stream", [False, True])
def test_a_pooled_connection_the_upstream_closed_is_retried(
    front: str, closing: _ClosingUpstream, stream: bool
) -> None:
    closed = closing.closed_on_reuse
    for _ in range(3):  # the 2nd and 3rd requests find the pooled connection closed under them
        answer = _client(front).chat.completions.create(
            model="closing", messages=[{"role": "user", "content": "x"}], stream=stream
        )
        chunks = list(answer) if stream else None
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) if chunks \
            else answer.choices[0].message.content  # type: ignore[union-attr]
        assert text == "fine"
    assert closing.closed_on_reuse >= closed + 2


@pytest.mark.parametrize(("model", "error", "sent"), [
    ("cut", "ended before", "partial partial "), ("broken", "not JSON", "before "),
])
def test_broken_stream_ends_with_an_error_event(front: str, model: str, error: str, sent: str) -> None:
    stream = _client(front).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match=error):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content if chunk.choices else None)
    assert "".join(r or "" for r in received) == sent  # what came before the fault is not lost
