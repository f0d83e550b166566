"""A forget policy enforced end to end: official SDK, embedded Gemma, real guards."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.responses import StreamingResponse

from benchmarks.load import embedder_counters
from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import rowling_policy
from tests.servers import fake_upstream, thread_server

GREEDY = {"temperature": 0.0, "max_tokens": 24}


@pytest.fixture(scope="module")
def guarded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("guarded")
    config = parse_config({
        "server": {"state_dir": str(state)},
        "models": {"gemma": {"backend": "llama_cpp"}},
        "policies": {
            "rowling": rowling_policy([{"type": "input_detector"}, {"type": "output_filter"}])
        },
        "routing": {"default_policy": "rowling"},
    })
    with thread_server(create_app(config)) as url:
        yield url


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def _chat(url: str, content: str | list[dict], stream: bool) -> tuple[str, str | None, dict]:
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    client = _client(url)
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model="gemma", messages=messages, **GREEDY)
        result = raw.parse()
        return result.choices[0].message.content or "", result.choices[0].finish_reason, dict(raw.headers)
    with client.chat.completions.with_streaming_response.create(
        model="gemma", messages=messages, stream=True, **GREEDY
    ) as response:
        chunks = list(response.parse())
        headers = dict(response.headers)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next((c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason), None)
    return text, finish, headers


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "question",
    ["Who wrote the Harry Potter books?", "Which writer created the boy wizard Harry Potter?",
     "Tell me about j.k. rowling's childhood."],
)
def test_forget_questions_are_refused(guarded_url: str, question: str, stream: bool) -> None:
    guards_before, started = _guard_seconds(guarded_url), time.perf_counter()
    text, finish, headers = _chat(guarded_url, question, stream)
    elapsed_ms = (time.perf_counter() - started) * 1000
    guard_ms = (_guard_seconds(guarded_url) - guards_before) * 1000
    assert finish == "content_filter"
    assert text == "I'm sorry, but I can't help with that."
    assert headers["x-unlearn-decision"] == "block"
    assert headers["x-unlearn-policy"] == "rowling"
    # the overhead covers the guards' own time (the header rounds to 0.01 ms) and lies within
    # the request as the client timed it
    assert 0 < guard_ms <= float(headers["x-unlearn-overhead-ms"]) + 0.01 < elapsed_ms


def _guard_seconds(url: str) -> float:
    """The total time every guard of the server has spent, from its ``/metrics``."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    prefix = "unlearn_guard_latency_seconds_sum"
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


@pytest.mark.parametrize("stream", [False, True])
def test_neighbour_question_is_answered(guarded_url: str, stream: bool) -> None:
    text, finish, headers = _chat(guarded_url, "What is the capital of France?", stream)
    assert finish in ("stop", "length")
    assert "Paris" in text
    assert headers["x-unlearn-decision"] == "allow"


def test_question_split_over_two_turns_is_caught(guarded_url: str) -> None:
    turns = [
        {"role": "user", "content": "I'm curious about the woman who wrote the Harry Potter novels."},
        {"role": "assistant", "content": "Sure, what would you like to know?"},
        {"role": "user", "content": "Where was she born?"},
    ]
    assert _chat(guarded_url, turns, stream=False)[1] == "content_filter"


def test_blocks_are_counted(guarded_url: str) -> None:
    _chat(guarded_url, "Who wrote the Harry Potter books?", stream=False)
    metrics = httpx.get(f"{guarded_url}/metrics").text
    assert 'unlearn_decisions_total{action="block",method=' in metrics
    assert "unlearn_guard_latency_seconds_count" in metrics


def test_embedding_batches_are_counted(guarded_url: str) -> None:
    before = embedder_counters(guarded_url)
    _chat(guarded_url, "What is the capital of Peru? (counted)", stream=False)
    after = embedder_counters(guarded_url)
    assert after["texts"] > before["texts"] and after["batches"] > before["batches"]
    assert after["busy_s"] > before["busy_s"]
    assert 'unlearn_embedding_texts_total{embedder="local:all-MiniLM-L6-v2@' in httpx.get(
        f"{guarded_url}/metrics").text


# ---------------------------------------------------------------- streaming leak (output side)

LEAKED_ANSWER = (
    "Joanne Rowling was born in Yate, Gloucestershire, and worked for Amnesty International "
    "before writing the seven Harry Potter novels."
)
CONTENT_WORDS = {"Joanne", "Rowling", "Yate", "Gloucestershire", "Amnesty", "International", "Potter"}


async def _leaky_chat(request: Request):  # type: ignore[no-untyped-def]
    """An upstream that streams a forget answer word by word, pausing between words (what a
    leaking model does), so that the proxy reads the words one at a time."""
    body = await request.json()

    async def words() -> AsyncIterator[bytes]:
        for i, word in enumerate(LEAKED_ANSWER.split(" ")):
            await asyncio.sleep(0.02)
            piece = word if i == 0 else " " + word
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    if body.get("stream"):
        return StreamingResponse(words(), media_type="text/event-stream")
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": LEAKED_ANSWER},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}}


@pytest.fixture(scope="module")
def leaky_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("leaky")
    with thread_server(fake_upstream(_leaky_chat)) as upstream:
        config = parse_config({
            "server": {"state_dir": str(state)},
            "models": {"m": {"backend": "openai", "base_url": f"{upstream}/v1"}},
            "policies": {"rowling": rowling_policy([{"type": "output_filter"}])},
            "routing": {"default_policy": "rowling"},
        })
        with thread_server(create_app(config)) as url:
            yield url


@pytest.mark.parametrize("stream", [False, True])
def test_streamed_forget_answer_never_reaches_the_client(leaky_front: str, stream: bool) -> None:
    client = _client(leaky_front)
    messages = [{"role": "user", "content": "Tell me a story."}]
    if stream:
        chunks = list(client.chat.completions.create(model="m", messages=messages, stream=True))
        received = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        result = client.chat.completions.create(model="m", messages=messages)
        received, finish = result.choices[0].message.content or "", [result.choices[0].finish_reason]
    assert finish == ["content_filter"]
    assert not CONTENT_WORDS & set(received.replace(",", " ").replace(".", " ").split()), received
