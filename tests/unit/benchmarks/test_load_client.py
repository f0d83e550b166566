"""The load benchmark's lean HTTP client against a real server: bodies, streams, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from benchmarks.load_client import LoadConnection, drive_load
from benchmarks.stub_upstream import build_app
from tests.servers import fake_upstream, thread_server

CHAT = json.dumps({"model": "stub", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with thread_server(build_app(latency_ms=5, tokens=4)) as url:
        yield url


def test_json_and_streamed_answers_arrive_whole(stub_url: str) -> None:
    async def run() -> None:
        connection = LoadConnection(stub_url)
        for _ in range(3):  # the same keep-alive connection answers each time
            answer = await connection.post_json("/v1/chat/completions", CHAT, timeout_s=10)
            assert answer.status == 200
            assert json.loads(answer.body)["choices"][0]["message"]["content"].split() == [
                "the", "quick", "brown", "fox"]
        streamed = json.loads(CHAT) | {"stream": True}
        answer = await connection.post_json("/v1/chat/completions",
                                            json.dumps(streamed).encode(), timeout_s=10)
        events = [line for line in answer.body.decode().split("\n\n") if line]
        assert answer.status == 200 and events[-1] == "data: [DONE]" and len(events) == 6
        connection.close()

    asyncio.run(run())


async def _flaky(request: Request) -> Response:
    number = int((await request.json())["n"])
    if number % 3 == 1:
        return JSONResponse({"error": {"message": "no"}}, status_code=500)
    if number % 3 == 2:  # closes the connection after answering
        return JSONResponse({"ok": number}, headers={"connection": "close"})
    return JSONResponse({"ok": number})


async def _slow(_: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        await asyncio.sleep(5)
        yield b"late"

    return StreamingResponse(body())


def test_drive_load_counts_errors_reconnects_and_times_out() -> None:
    with thread_server(fake_upstream(_flaky)) as url:
        latencies, errors, wall = asyncio.run(drive_load(
            url, "/v1/chat/completions", lambda i: json.dumps({"n": i}).encode(),
            concurrency=3, requests=30))
    assert (len(latencies), errors) == (20, 10) and wall > 0
    with thread_server(fake_upstream(_slow)) as url:
        latencies, errors, _ = asyncio.run(drive_load(
            url, "/v1/chat/completions", lambda i: b"{}", concurrency=2, requests=2,
            timeout_s=0.3))
    assert (latencies, errors) == ([], 2)
    with pytest.raises(ValueError, match="http:// URL"):
        LoadConnection("https://example.invalid")
