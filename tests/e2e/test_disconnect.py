"""A client that goes away before its answer begins is noticed at once (issue 16, item 3): the
proxy cancels the request and closes its upstream connection, streamed or not, policy or not.

The upstream is an in-test server that answers only after ``SLOW_S`` and records when the
proxy's connection to it closes; the client gives up after ``GIVE_UP_S``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import rowling_policy
from tests.servers import SlowUpstream, fake_upstream, thread_server

SLOW_S = 20.0
GIVE_UP_S = 0.5


@pytest.fixture(scope="module")
def slow() -> SlowUpstream:
    return SlowUpstream(SLOW_S)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, slow: SlowUpstream) -> Iterator[str]:
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
    url: str, slow: SlowUpstream, model: str, stream: bool
) -> None:
    body = {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me about the sea."}]}
    gave_up = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=GIVE_UP_S)
    # the upstream call is closed within a few seconds, not after SLOW_S
    assert slow.abandoned.acquire(timeout=SLOW_S / 4), "the upstream call was left running"
    assert time.monotonic() - gave_up < SLOW_S / 2
    health = httpx.get(f"{url}/healthz", timeout=10)  # and the server is fine
    assert health.status_code == 200
