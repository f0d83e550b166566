"""A guard outage is never a policy block (issue 18, finding 9).

The real server over loopback, the stub upstream as a process, and a fault-injecting embedding
server that can be switched between up, failing (500), overloaded (503) and slow (past the
embedder's timeout). Under ``fail_mode: closed`` a benign prompt gets a 503 ``server_error``
with ``x-should-retry: true`` (the official SDK retries it), audited as ``guard_failed``; a
slow embedder opens the circuit, so guards then fail at once instead of each waiting out the
timeout; ``/metrics`` and ``/healthz`` show it, and a trial call closes it again.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import rowling_policy
from tests.servers import bag_of_words, fake_embedder, stub_upstream_process, thread_server

ADMIN_ENV, ADMIN_KEY = "UNLEARN_TEST_OUTAGE_ADMIN_KEY", "sk-outage-admin"
TIMEOUT_S = 0.5
_SERIAL = itertools.count()


def _benign() -> str:
    """A benign prompt never sent before (a text embedded once is cached, embedder down or not)."""
    return f"Tea grows on the hills of Assam, garden {next(_SERIAL)}. Pickers work by hand."


class EmbeddingService:
    """The fault-injecting embedding server's state: ``up``, ``failing``, ``overloaded``,
    ``slow``; and how many requests it got."""

    def __init__(self) -> None:
        self.mode = "up"
        self.requests = 0

    async def embeddings(self, request: Request) -> Any:
        self.requests += 1
        texts = (await request.json())["input"]
        if self.mode == "slow":
            await asyncio.sleep(4 * TIMEOUT_S)
        if self.mode == "failing":
            return JSONResponse({"error": {"message": "embedder is down"}}, status_code=500)
        if self.mode == "overloaded":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        return {"object": "list", "data": [
            {"index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)]}



@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with stub_upstream_process("--echo") as url:
        yield url


@pytest.fixture
def proxy(
    upstream: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, EmbeddingService]]:
    """A server whose policy (its ``fail_mode`` the fixture's parameter) embeds through a
    fresh embedding service, so every test gets a circuit of its own."""
    fail_mode = request.param
    service = EmbeddingService()
    monkeypatch.setenv(ADMIN_ENV, ADMIN_KEY)
    with thread_server(fake_embedder(service.embeddings)) as embed_url:
        embedder = {"type": "openai", "base_url": f"{embed_url}/v1", "model": "bow",
                    "timeout_s": TIMEOUT_S, "circuit_failures": 2, "circuit_cooldown_s": 1.5}
        methods = [{"type": "input_detector", "aliases": False}, {"type": "output_filter"}]
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("outage")),
                       "admin_key_env": ADMIN_ENV},
            "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
            "policies": {"p": rowling_policy(methods, embedder=embedder, fail_mode=fail_mode)},
            "routing": {"default_policy": "p"},
        })
        with thread_server(create_app(config)) as url:
            yield url, service


def _client(url: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=retries)


def _ask(url: str, text: str, *, stream: bool = False, retries: int = 0) -> str:
    client = _client(url, retries)
    messages: Any = [{"role": "user", "content": text}]
    if not stream:
        result = client.chat.completions.create(model="stub", messages=messages)
        return result.choices[0].message.content or ""
    chunks = client.chat.completions.create(model="stub", messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _metric(url: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}{{{re.escape(selector)}}} (\S+)$",
                      httpx.get(f"{url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def _audit(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/admin/audit", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


@pytest.mark.parametrize("proxy", ["closed"], indirect=True)
@pytest.mark.parametrize("mode", ["failing", "overloaded"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_outage_under_fail_closed_is_a_retryable_503(
    proxy: tuple[str, EmbeddingService], mode: str, stream: bool
) -> None:
    url, service = proxy
    text = _benign()
    assert _ask(url, text, stream=stream) == text
    service.mode = mode
    with pytest.raises(openai.InternalServerError) as raised:
        _ask(url, _benign(), stream=stream, retries=2)
    response = raised.value.response
    assert (response.status_code, response.headers["x-should-retry"]) == (503, "true")
    assert raised.value.body["type"] == "server_error"  # type: ignore[index]
    assert "input_detector of policy p is unavailable" in raised.value.message
    assert _metric(url, "unlearn_requests_total", endpoint="chat", status="503") == 3  # retried
    assert {r["action"] for r in _audit(url)} == {"guard_failed"}  # an outage, never a block
    service.mode = "up"
    time.sleep(1.5)  # an open circuit (503s open it; 500s do not) lets a trial through
    text = _benign()
    assert _ask(url, text, stream=stream) == text


@pytest.mark.parametrize("proxy", ["open"], indirect=True)
def test_a_slow_embedder_opens_the_circuit_and_guards_fail_fast(
    proxy: tuple[str, EmbeddingService],
) -> None:
    url, service = proxy
    story = " ".join(f"Sentence {i} is about tea from Assam." for i in range(20))
    assert _ask(url, story, stream=True) == story
    service.mode = "slow"
    story = story.replace("tea", "green tea")
    calls, started = service.requests, time.perf_counter()
    # one stream: the input guard and the first output check time out (and open the
    # circuit); the output guard that failed is not called again for this stream, where
    # every sentence used to wait out a timeout of its own
    assert _ask(url, story, stream=True) == story
    first = time.perf_counter() - started
    assert service.requests - calls == 2
    calls, started = service.requests, time.perf_counter()
    for text in [_benign() for _ in range(5)]:
        assert _ask(url, text) == text
    fast = (time.perf_counter() - started) / 5
    assert service.requests == calls  # the open circuit sends nothing to the sick service
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "degraded" and set(health["embedder_circuits"].values()) == {"open"}
    (model_id,) = health["embedder_circuits"]
    assert _metric(url, "unlearn_embedder_circuit_open", embedder=model_id) == 1.0
    assert _metric(url, "unlearn_embedder_circuit_rejected_total", embedder=model_id) >= 10
    assert _metric(url, "unlearn_embedder_circuit_opened_total", embedder=model_id) == 1
    service.mode = "up"
    time.sleep(1.5)
    text = _benign()
    assert _ask(url, text) == text  # the trial call succeeds: the circuit closes
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    assert _metric(url, "unlearn_embedder_circuit_open", embedder=model_id) == 0.0
    audit = _audit(url)
    assert audit and {r["action"] for r in audit} == {"guard_failed"}
    print(f"slow embedder, fail open: first stream {first:.2f} s, then {fast * 1000:.0f} ms a "
          f"request while the circuit is open (timeout {TIMEOUT_S} s)")
