"""A client that goes away before its answer begins is noticed at once (issue 16, item 3): the
proxy cancels the request and closes its upstream connection, streamed or not, policy or not.

The upstream is an in-test server that answers only after ``SLOW_S`` and records when the
proxy's connection to it closes; the client gives up after ``GIVE_UP_S``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import rowling_policy
from tests.servers import fake_upstream, thread_server

SLOW_S = 20.0
GIVE_UP_S = 0.5


class _Slow:
    """Answers after SLOW_S; ``closed`` is released when the proxy hangs up on a call."""

    def __init__(self) -> None:
        self.closed = threading.Semaphore(0)

    async def chat(self, request: Request) -> JSONResponse:
        deadline = time.monotonic() + SLOW_S
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                self.closed.release()
                return JSONResponse({}, status_code=499)
            await asyncio.sleep(0.02)
        return JSONResponse({"error": {"message": "too late"}}, status_code=500)


@pytest.fixture(scope="module")
def slow() -> _Slow:
    return _Slow()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, slow: _Slow) -> Iterator[str]:
    with thread_server(fake_upstream(slow.chat)) as upstream:
        base = {"backend": "openai", "base_url": f"{upstream}/v1", "read_timeout_s": 60}
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("disconnect"))},
            "models": {"plain": base, "guarded": base},
            "policies": {"p": rowling_policy([{"type": "output_filter"}])},
            "routing": {"models": {"guarded": "p"}},
        })
        with thread_server(create_app(config)) as served:
            yield served


@pytest.mark.parametrize("model", ["plain", "guarded"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_gives_up_closes_the_upstream_call(
    url: str, slow: _Slow, model: str, stream: bool
) -> None:
    body = {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me about the sea."}]}
    gave_up = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=GIVE_UP_S)
    # the upstream call is closed within a few seconds, not after SLOW_S
    assert slow.closed.acquire(timeout=SLOW_S / 4), "the upstream call was left running"
    assert time.monotonic() - gave_up < SLOW_S / 2
    health = httpx.get(f"{url}/healthz", timeout=10)  # and the server is fine
    assert health.status_code == 200
