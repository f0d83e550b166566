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
        run = asyncio.run(drive_load(
            url, "/v1/chat/completions", lambda i: json.dumps({"n": i}).encode(),
            concurrency=3, requests=30))
    assert (len(run.latencies_ms), run.errors, run.completed, run.sent) == (20, 10, 20, 30)
    assert run.window_s > 0
    with thread_server(fake_upstream(_slow)) as url:
        run = asyncio.run(drive_load(
            url, "/v1/chat/completions", lambda i: b"{}", concurrency=2, requests=2,
            timeout_s=0.3))
    assert (run.latencies_ms, run.errors) == ([], 2)
    with pytest.raises(ValueError, match="http:// URL"):
        LoadConnection("https://example.invalid")
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(drive_load("http://127.0.0.1:9", "/", lambda i: b"{}", concurrency=1))


@pytest.mark.parametrize(("warmup_s", "duration_s", "expected"), [
    # 250 ms answers: each client sends at 0, 0.25 and 0.5 s; the answers at 0.25 and 0.5 s
    # are inside the window, the one at 0.75 s is awaited (its latency counts) but not inside
    (0.0, 0.625, (6, 4, 6)),
    # sends at 0, 0.25, 0.5 and 0.75 s; the window [0.375, 0.875] s holds the answers at 0.5
    # and 0.75 s, and only the requests sent inside it give latencies
    (0.375, 0.5, (4, 4, 8)),
])
def test_a_timed_drive_counts_throughput_inside_its_window_only(
        warmup_s: float, duration_s: float, expected: tuple[int, int, int]) -> None:
    with thread_server(build_app(latency_ms=250, tokens=2)) as url:
        run = asyncio.run(drive_load(url, "/v1/chat/completions", lambda i: CHAT, concurrency=2,
                                     duration_s=duration_s, warmup_s=warmup_s))
    assert (len(run.latencies_ms), run.completed, run.sent, run.errors) == (*expected, 0)
    assert run.rps == pytest.approx(expected[1] / duration_s)
