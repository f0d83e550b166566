from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from filters.circuit import CircuitBreaker
from filters.embedder import (
    BreakerEmbedder,
    CachingEmbedder,
    EmbedderError,
    EmbedderUnavailable,
    LocalEmbedder,
    RemoteEmbedder,
    build_embedder,
)
from proxy.core.config import EmbedderConfig
from proxy.core.errors import ConfigError


def test_local_embedder_is_normalised_and_semantic() -> None:
    embedder = build_embedder(EmbedderConfig())
    vectors = embedder.embed(
        ["How old is the Moon?", "What is the age of the Moon?", "Best pizza dough"]
    )
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert embedder.embed([]).shape == (0, 384)


def test_build_embedder_shares_one_instance() -> None:
    assert build_embedder(EmbedderConfig()) is build_embedder(
        EmbedderConfig(model="all-MiniLM-L6-v2")
    )


def test_caching_embedder_reuses_rows() -> None:
    calls: list[list[str]] = []

    class Counting:
        model_id = "counting"

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(list(texts))
            return np.eye(4, dtype=np.float32)[[len(t) % 4 for t in texts]]

    cache = CachingEmbedder(Counting(), max_items=8)
    first = cache.embed(["a", "bb"])
    second = cache.embed(["bb", "ccc", "a"])
    assert calls == [["a", "bb"], ["ccc"]]
    np.testing.assert_array_equal(second[[2, 0]], first)
    cache.clear()
    cache.embed(["a", "ccc"])
    assert calls[-1] == ["a", "ccc"]


def test_local_embedder_rejects_unknown_model() -> None:
    with pytest.raises(ConfigError, match="neither"):
        LocalEmbedder("/no/such/model")


def _remote(handler, **kwargs) -> RemoteEmbedder:  # type: ignore[no-untyped-def]
    return RemoteEmbedder(
        base_url="http://emb.test/v1/", model="m", transport=httpx.MockTransport(handler), **kwargs
    )


def test_remote_embedder_orders_and_normalises(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = json.loads(request.content)
        data = [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [3.0, 4.0]}]
        return httpx.Response(200, json={"data": data})

    monkeypatch.setenv("EMB_KEY", "sk-123")
    vectors = _remote(handler, api_key_env="EMB_KEY").embed(["x", "y"])
    assert seen == {
        "url": "http://emb.test/v1/embeddings",
        "auth": "Bearer sk-123",
        "body": {"model": "m", "input": ["x", "y"]},
    }
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 1.0]])


@pytest.mark.parametrize(
    ("response", "message", "down"),
    [
        (httpx.Response(503, text="overloaded"), "returned 503", True),
        (httpx.Response(500, text="cannot embed that"), "returned 500", False),
        (httpx.Response(200, json={"nope": 1}), "malformed", False),
        (
            httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}]}),
            "1 embeddings for 2",
            False,
        ),
    ],
)
def test_remote_embedder_errors_are_clear(
    response: httpx.Response, message: str, down: bool
) -> None:
    """A service that is down or overloaded is ``EmbedderUnavailable`` (it may open the
    circuit); a failure on the texts is not."""
    with pytest.raises(EmbedderError, match=message) as raised:
        _remote(lambda request: response).embed(["a", "b"])
    assert isinstance(raised.value, EmbedderUnavailable) is down


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
def test_remote_embedder_connection_error(error: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("refused", request=request)

    with pytest.raises(EmbedderUnavailable, match="failed"):
        _remote(handler).embed(["a"])


def test_an_embedder_that_is_down_fails_fast_until_a_trial_succeeds() -> None:
    calls: list[str] = []
    up = False

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if not up:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0]}]})

    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=5.0, clock=lambda: now[0])
    embedder = BreakerEmbedder(_remote(handler), breaker)
    for _ in range(2):
        with pytest.raises(EmbedderUnavailable, match="timed out"):
            embedder.embed(["a"])
    with pytest.raises(EmbedderUnavailable, match=r"circuit open, next trial in 5\.0 s"):
        embedder.embed(["a"])
    assert (len(calls), breaker.state, breaker.opened, breaker.rejected) == (2, "open", 1, 1)
    now[0] = 5.0
    up = True
    np.testing.assert_allclose(embedder.embed(["a"]), [[1.0, 0.0]])
    assert (len(calls), breaker.state) == (3, "closed")


def test_remote_embedder_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="MISSING_KEY"):
        _remote(lambda r: httpx.Response(200), api_key_env="MISSING_KEY")
