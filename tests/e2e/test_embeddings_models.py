"""``GET /v1/models/{id}`` and ``POST /v1/embeddings`` (issue 15, item 4), the official SDK as
client: embeddings passed through to a real OpenAI-compatible upstream process (the stub, which
echoes the sha256 of the body it parsed) and back unchanged; the embedded engine's served by
MiniLM, equal to MiniLM's own; the forget policy's input guards on every input text.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from benchmarks.stub_upstream import EMBEDDING_DIMENSIONS, body_digest, stub_embedding
from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import RETAIN, rowling_policy
from tests.servers import (
    fake_upstream,
    process_server,
    stub_upstream_process,
    thread_server,
    write_config,
)

KEY = "sk-embeddings-client"
FORGET = "Who wrote the Harry Potter books?"  # a forget question of the policy
PARAPHRASE = "In which town was the woman who wrote the Harry Potter novels born?"
ALIAS = "Robert Galbraith"
NEIGHBOUR = RETAIN[0]  # "Who wrote The Lord of the Rings?": must be answered
TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", NEIGHBOUR]


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An unlearn-proxy process: ``upstream`` (the stub, no policy), ``guarded`` (the stub under
    the Rowling policy) and ``gemma`` (llama.cpp, under the policy)."""
    root = tmp_path_factory.mktemp("embeddings")
    with stub_upstream_process() as stub:
        config = write_config(root / "config.yaml", {
            "server": {"api_keys": [KEY], "state_dir": str(root / "state")},
            "models": {
                "upstream": {"backend": "openai", "base_url": f"{stub}/v1"},
                "guarded": {"backend": "openai", "base_url": f"{stub}/v1"},
                "gemma": {"backend": "llama_cpp"},
            },
            "policies": {"rowling": rowling_policy([{"type": "input_detector"}])},
            "routing": {"models": {"guarded": "rowling", "gemma": "rowling"}},
        })
        with process_server(config) as (url, _):
            yield url


@pytest.fixture(scope="module")
def sent() -> list[bytes]:
    """The bodies the SDK sent, in order."""
    return []


@pytest.fixture()
def client(proxy_url: str, sent: list[bytes]) -> Iterator[openai.OpenAI]:
    def record(request: httpx.Request) -> None:
        sent.append(request.content)

    http = httpx.Client(event_hooks={"request": [record]}, timeout=120)
    with http:
        yield openai.OpenAI(base_url=f"{proxy_url}/v1", api_key=KEY, max_retries=0,
                            http_client=http)


def _vectors(response: Any) -> np.ndarray:
    """The rows of an embeddings response; a base64 one (what the SDK hands over undecoded when
    asked for it) read as little-endian float32, as OpenAI encodes it."""
    return np.array([np.frombuffer(base64.b64decode(e), dtype="<f4") if isinstance(e, str) else e
                     for e in (item.embedding for item in response.data)], dtype=np.float64)


# ---------------------------------------------------------------------------- models


def test_retrieve_gives_the_models_list_entry(client: openai.OpenAI) -> None:
    listed = {m.id: m for m in client.models.list().data}
    for name in ("upstream", "guarded", "gemma"):
        model = client.models.retrieve(name)
        assert model == listed[name]
        assert model.to_dict() == {"id": name, "object": "model", "created": 0,
                                   "owned_by": "unlearn-proxy"}


def test_retrieve_an_unknown_model_is_not_found(client: openai.OpenAI, proxy_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("no-such-model")
    assert raised.value.body == {"message": "the model 'no-such-model' does not exist",
                                 "type": "not_found_error", "param": "model",
                                 "code": "model_not_found"}
    anonymous = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.retrieve("gemma")


# ---------------------------------------------------------------------------- passthrough

PASSTHROUGH = {
    "string": {"input": "hello world"},
    "strings": {"input": ["hello", "world", "hello"]},
    "token ids": {"input": [15339, 1917]},
    "token-id lists": {"input": [[15339], [1917, 0]]},
    "float, dimensions, user, unknown field": {
        "input": ["a", "b"], "encoding_format": "float", "dimensions": 5, "user": "u-1",
        "extra_body": {"vendor_option": {"nested": [1, "two", None]}}},
}


@pytest.mark.parametrize("request_", list(PASSTHROUGH.values()), ids=list(PASSTHROUGH))
def test_the_upstream_receives_what_the_client_sent(
    client: openai.OpenAI, sent: list[bytes], request_: dict[str, Any]
) -> None:
    response = client.embeddings.create(model="upstream", **request_)
    body = json.loads(sent[-1])
    assert response.model_extra is not None
    assert response.model_extra["stub_request_sha256"] == body_digest(body)
    inputs = [body["input"]] if isinstance(body["input"], str) or isinstance(
        body["input"][0], int) else body["input"]
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
    assert [d.index for d in response.data] == list(range(len(inputs)))
    assert _vectors(response).tolist() == [stub_embedding(i, dimensions) for i in inputs]
    assert response.model == "upstream"


def test_the_client_receives_the_upstream_body_unchanged(proxy_url: str) -> None:
    with stub_upstream_process() as stub:  # a second stub: the same answers, asked directly
        for body in ({"model": "upstream", "input": ["x", "y"], "encoding_format": "base64"},
                     {"model": "upstream", "input": "z"}):
            direct = httpx.post(f"{stub}/v1/embeddings", json=body, timeout=30)
            proxied = httpx.post(f"{proxy_url}/v1/embeddings", json=body, timeout=30,
                                 headers={"authorization": f"Bearer {KEY}"})
            assert proxied.status_code == direct.status_code == 200
            assert proxied.content == direct.content
            assert proxied.headers["content-type"] == "application/json"
            assert proxied.headers["x-unlearn-decision"] == "allow"


@pytest.mark.parametrize("model", ["upstream", "gemma"])
def test_base64_decodes_to_the_float_vectors(client: openai.OpenAI, sent: list[bytes],
                                             model: str) -> None:
    decoded = client.embeddings.create(model=model, input=TEXTS)  # the SDK asks for base64
    assert json.loads(sent[-1])["encoding_format"] == "base64"
    floats = client.embeddings.create(model=model, input=TEXTS, encoding_format="float")
    explicit = client.embeddings.create(model=model, input=TEXTS, encoding_format="base64")
    assert all(isinstance(item.embedding, str) for item in explicit.data)  # left to the caller
    assert _vectors(decoded).tolist() == _vectors(floats).tolist() == _vectors(explicit).tolist()
    assert decoded.usage == floats.usage == explicit.usage


# ---------------------------------------------------------------------------- embedded


@pytest.fixture(scope="module")
def minilm() -> Any:
    from filters.embedder import LocalEmbedder

    return LocalEmbedder()


ENCODINGS = {"sdk default (base64)": {}, "float": {"encoding_format": "float"},
             "base64": {"encoding_format": "base64"}}


@pytest.mark.parametrize("encoding", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_an_embedded_model_serves_minilm(
    client: openai.OpenAI, minilm: Any, encoding: dict[str, str]
) -> None:
    response = client.embeddings.create(model="gemma", input=TEXTS, **encoding)
    assert response.object == "list" and response.model == "gemma"
    assert [(d.object, d.index) for d in response.data] == [("embedding", i) for i in range(3)]
    vectors = _vectors(response)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors, minilm.embed(TEXTS), atol=1e-5)
    assert response.usage.prompt_tokens == response.usage.total_tokens > len(TEXTS)
    one = client.embeddings.create(model="gemma", input=TEXTS[1], **encoding)
    np.testing.assert_allclose(_vectors(one)[0], vectors[1], atol=1e-5)


@pytest.mark.parametrize(("request_", "param"), [
    ({"input": [15339, 1917]}, "input"),
    ({"input": [[15339], [1917]]}, "input"),
    ({"input": "hello", "dimensions": 128}, "dimensions"),
    ({"input": "word " * 400}, "input"),  # longer than MiniLM reads: never cut silently
], ids=["token ids", "token-id lists", "dimensions", "too long"])
def test_what_minilm_cannot_do_is_a_400(
    client: openai.OpenAI, request_: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="gemma", **request_)
    assert raised.value.body["type"] == "invalid_request_error"
    assert raised.value.body["param"] == param


# ---------------------------------------------------------------------------- policy


@pytest.mark.parametrize("model", ["gemma", "guarded"])
@pytest.mark.parametrize("inputs", [
    FORGET, PARAPHRASE, ALIAS, [FORGET, *TEXTS], [*TEXTS, PARAPHRASE],
], ids=["question", "paraphrase", "alias", "first of four", "last of four"])
def test_forget_content_is_blocked(client: openai.OpenAI, model: str, inputs: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=model, input=inputs)
    assert raised.value.status_code == 400
    assert raised.value.body["type"] == "invalid_request_error"
    assert raised.value.body["code"] == "content_filter"
    headers = raised.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert headers["x-unlearn-decision"] == "block" and headers["x-unlearn-policy"] == "rowling"


@pytest.mark.parametrize("model", ["gemma", "guarded"])
def test_a_neighbour_question_passes(client: openai.OpenAI, model: str) -> None:
    raw = client.embeddings.with_raw_response.create(model=model, input=[NEIGHBOUR, TEXTS[0]])
    assert raw.headers["x-unlearn-decision"] == "allow"
    assert raw.headers["x-unlearn-policy"] == "rowling"
    assert len(raw.parse().data) == 2


def test_token_ids_under_a_policy_are_refused(client: openai.OpenAI) -> None:
    """No guard reads token ids: under a policy they would pass unread."""
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="guarded", input=[15339, 1917])
    assert raised.value.body["param"] == "input"


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model="no-such-model", input="hello")
    assert raised.value.body["code"] == "model_not_found"
    assert raised.value.body["param"] == "model"


# ---------------------------------------------------------------------------- faults, limits


async def _faulty_embeddings(request: Request) -> Any:
    mode = (await request.json())["input"]
    if mode == "slow":
        await asyncio.sleep(5)
    if mode == "garbage":
        return JSONResponse(["not", "an", "object"])
    if mode == "refused":
        return JSONResponse({"error": {"message": "bad input"}}, status_code=400)
    return JSONResponse({"error": {"message": "boom"}}, status_code=500)


async def _no_chat(request: Request) -> JSONResponse:
    return JSONResponse({"error": {"message": "no chat"}}, status_code=404)


@pytest.fixture(scope="module")
def faulty_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An in-process proxy in front of a faulty upstream, with small limits."""
    state = tmp_path_factory.mktemp("faulty")
    with thread_server(fake_upstream(_no_chat, embeddings=_faulty_embeddings)) as upstream:
        config = parse_config({
            "server": {"state_dir": str(state), "api_keys": [KEY], "max_body_bytes": 4000,
                       "max_prompt_chars": 1000},
            "models": {"faulty": {"backend": "openai", "base_url": f"{upstream}/v1",
                                  "read_timeout_s": 0.5}},
        })
        with thread_server(create_app(config)) as url:
            yield url


@pytest.mark.parametrize(("mode", "error", "status"), [
    ("boom", openai.InternalServerError, 502),
    ("garbage", openai.InternalServerError, 502),
    ("slow", openai.InternalServerError, 504),
    ("refused", openai.BadRequestError, 400),
    ("x" * 1001, openai.BadRequestError, 400),  # over max_prompt_chars
    ("x" * 5000, openai.APIStatusError, 413),  # over max_body_bytes
])
def test_upstream_faults_and_limits(faulty_url: str, mode: str, error: type, status: int) -> None:
    client = openai.OpenAI(base_url=f"{faulty_url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(error) as raised:
        client.embeddings.create(model="faulty", input=mode)
    assert raised.value.status_code == status
    assert set(raised.value.response.json()["error"]) == {"message", "type", "param", "code"}


def test_the_rate_limit_counts_embeddings(tmp_path: Path) -> None:
    config = parse_config({
        "server": {"state_dir": str(tmp_path), "api_keys": [KEY], "rate_limit_per_minute": 2},
        "models": {"faulty": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}},
    })
    with thread_server(create_app(config)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.NotFoundError):
                client.embeddings.create(model="unknown", input="hello")
        with pytest.raises(openai.RateLimitError):
            client.embeddings.create(model="unknown", input="hello")
