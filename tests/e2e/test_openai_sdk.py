"""The official openai SDK against unlearn-proxy serving the real embedded Gemma model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY

GREEDY = {"temperature": 0.0, "max_tokens": 12}


@pytest.fixture()
def client(llama_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llama_url}/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture()
def aclient(llama_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{llama_url}/v1", api_key=CLIENT_KEY, max_retries=0)


def test_completion_knows_a_fact(client: openai.OpenAI) -> None:
    result = client.completions.create(model="gemma", prompt="Harry Potter was written by", **GREEDY)
    assert isinstance(result, openai.types.Completion)
    assert "Rowling" in result.choices[0].text
    assert result.usage is not None and result.usage.completion_tokens > 0


def test_chat_completion_parses(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "Who wrote Harry Potter? Answer with the name."}],
        temperature=0.0,
        max_tokens=24,
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.choices[0].message.role == "assistant"
    assert "Rowling" in (result.choices[0].message.content or "")
    assert result.choices[0].finish_reason in ("stop", "length")


def test_chat_stream_matches_non_stream_and_reports_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name the capital of France."}]
    full = client.chat.completions.create(model="gemma", messages=messages, **GREEDY)
    stream = client.chat.completions.create(
        model="gemma", messages=messages, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_chat_stream_wire_format(llama_url: str) -> None:
    """The raw SSE bytes: OpenAI's event framing, role first, finish, usage, then [DONE]."""
    body = {"model": "gemma", "messages": [{"role": "user", "content": "Say hello."}], "stream": True,
            "stream_options": {"include_usage": True}, **GREEDY}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.stream("POST", f"{llama_url}/v1/chat/completions", json=body, headers=headers,
                      timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = raw.split(b"\n\n")[:-2]
    assert all(e.startswith(b"data: {") and b"\n" not in e for e in events)
    chunks = [json.loads(e[len(b"data: "):]) for e in events]
    assert len({c["id"] for c in chunks}) == 1 and {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *content, finish, usage = chunks
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in content).strip()
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0


def test_completion_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="gemma", prompt="Harry Potter was written by", stream=True, **GREEDY
    )
    chunks = list(stream)
    assert "Rowling" in "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def test_async_client_chat_and_stream(aclient: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Who wrote Harry Potter?"}]
    result = await aclient.chat.completions.create(model="gemma", messages=messages, **GREEDY)
    assert result.choices[0].message.content
    stream = await aclient.chat.completions.create(
        model="gemma", messages=messages, stream=True, **GREEDY
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == result.choices[0].message.content
    await aclient.close()


def test_models_endpoint(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gemma"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "no-such-model"}, openai.NotFoundError),
        ({"temperature": 5}, openai.BadRequestError),
        ({"n": 2}, openai.BadRequestError),
        ({"max_tokens": 0}, openai.BadRequestError),
        ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError),
    ],
)
def test_sdk_error_classes(client: openai.OpenAI, kwargs: dict, error: type[Exception]) -> None:
    args = {"model": "gemma", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**args)
    body = info.value.body  # type: ignore[attr-defined]
    assert set(body) >= {"message", "type", "param", "code"}


def test_wrong_and_missing_key(llama_url: str) -> None:
    bad = openai.OpenAI(base_url=f"{llama_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    response = httpx.get(f"{llama_url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "gemma"}', 400, "messages"),
        (b'{"model": "gemma", "messages": "hi"}', 400, "messages"),
        (b'{"model": "gemma", "messages": [{"role": "wizard", "content": "x"}]}', 400, "messages.0.role"),
        (b'{"model": "gemma", "messages": []}', 400, "messages"),
        (b'{"model": "gemma", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, None),
        (b'{"model": "gemma", "messages": [{"role": "user", "content": "' + b"x" * 300_000 + b'"}]}', 413, None),
    ],
)
def test_bad_bodies_get_the_envelope(llama_url: str, body: bytes, status: int, param: str | None) -> None:
    response = httpx.post(
        f"{llama_url}/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_healthz_and_metrics(llama_url: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gemma", messages=[{"role": "user", "content": "hi"}], **GREEDY)
    assert httpx.get(f"{llama_url}/v1/models").status_code == 401
    assert httpx.get(f"{llama_url}/healthz").json()["status"] == "ok"
    text = httpx.get(f"{llama_url}/metrics").text
    assert 'unlearn_requests_total{endpoint="chat",status="200"}' in text
    assert "unlearn_request_latency_seconds_bucket" in text
    assert "unlearn_upstream_latency_seconds_count" in text
    assert 'unlearn_errors_total{type="authentication_error"}' in text
