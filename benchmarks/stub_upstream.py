"""A minimal OpenAI-compatible upstream with configurable latency, for load and overhead runs.

    python -m benchmarks.stub_upstream --port 9100 --latency-ms 20 --tokens 16
    python -m benchmarks.stub_upstream --port 9100 --echo --event-delay-ms 30 --chunk-seed 7

It answers chat and completion requests (streaming and not) with a fixed text, after
``latency-ms`` (spread over the tokens when streaming). It stands in for a real model server so
that what is measured is the proxy, not the model. With ``--echo`` the answer is the request's
last user message (chat) or prompt (completion), cut into tokens of at most five characters;
``--event-delay-ms`` paces a stream with a fixed pause before every write, and ``--chunk-seed``
cuts the SSE bytes into seeded random writes (several events in one write, an event split over
two) instead of one event per write. With ``--rich`` every answer carries what OpenAI's do
beyond the text and answers ``n``, ``tools`` and ``functions`` as a model server would
(:mod:`benchmarks.stub_answers`): a passthrough test's upstream. ``GET /last-request`` returns the
body of the last completion request exactly as it arrived.

``/v1/embeddings`` answers with deterministic vectors (:func:`stub_embedding`, float or base64)
and, as ``stub_request_sha256``, the sha256 of the request body it parsed
(:func:`body_digest`), so a test can tell that a proxy passed a request through unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.stub_answers import rich_reply, rich_stream, tokens_of, usage_counts

WORDS = "the quick brown fox jumps over the lazy dog while the band plays on".split()

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def build_app(
    *,
    latency_ms: float = 0.0,
    tokens: int = 16,
    echo: bool = False,
    event_delay_ms: float | None = None,
    chunk_seed: int | None = None,
    rich: bool = False,
) -> App:
    """The stub app: ``tokens`` words after ``latency_ms`` milliseconds (or, with ``echo``, the
    request's own text; ``event_delay_ms`` and ``chunk_seed`` as in the module docstring).

    A bare ASGI app (no framework), so that the stub costs as little as possible of a CPU it
    shares with the proxy it stands in front of.
    """
    fixed = [WORDS[i % len(WORDS)] + " " for i in range(tokens)]
    last_request = [b"{}"]

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await _send(send, 200, b"application/json", b'{"status":"ok"}')
        elif path == "/last-request":
            await _send(send, 200, b"application/json", last_request[0])
        elif scope["method"] == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            last_request[0] = raw = await _body(receive)
            body = json.loads(raw)
            chat = path.endswith("/chat/completions")
            text = _request_text(body, chat) if echo else "".join(fixed)
            pieces = tokens_of(text) if echo else fixed
            finish = "stop" if echo else "length"
            if body.get("stream"):
                delay_ms = latency_ms / max(1, len(pieces))
                delay_s = (delay_ms if event_delay_ms is None else event_delay_ms) / 1000
                events = rich_stream(body, chat, text) if rich else _events(pieces, chat, finish)
                await _stream(send, _writes(events, pieces, chunk_seed), delay_s)
            else:
                await asyncio.sleep(latency_ms / 1000)
                answer = rich_reply(body, chat, text) if rich else _completion(
                    pieces, chat, body, finish)
                await _send(send, 200, b"application/json", json.dumps(answer).encode())
        elif scope["method"] == "POST" and path == "/v1/embeddings":
            status, answer = _embeddings(json.loads(await _body(receive)))
            await _send(send, status, b"application/json", answer)
        else:
            await _send(send, 404, b"application/json", b'{"error":{"message":"not found"}}')

    return app


def _request_text(body: dict[str, Any], chat: bool) -> str:
    """The last user message of a chat, or a completion's prompt (what ``echo`` answers)."""
    if not chat:
        prompt = body.get("prompt", "")
        return str(prompt[0] if isinstance(prompt, list) else prompt)
    users = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1] if users else ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


EMBEDDING_DIMENSIONS = 8
MAX_DIMENSIONS = 3072  # text-embedding-3-large's


def body_digest(body: Any) -> str:
    """The sha256 of a parsed JSON body, written canonically (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def stub_embedding(item: Any, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The stub's vector for one input (a string or a list of token ids): float32 values in
    [-1, 1) drawn from the item's own digest."""
    seed = hashlib.sha256(json.dumps(item).encode("utf-8", "surrogatepass")).digest()
    rng = random.Random(seed)
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values)))


def _embeddings(body: Any) -> tuple[int, bytes]:
    """OpenAI's embeddings response to ``body`` (400 for one the stub cannot answer)."""
    if not isinstance(body, dict):
        body = {}
    items = body.get("input")
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if isinstance(items, str) or (isinstance(items, list) and items and all(
            isinstance(i, int) for i in items)):
        items = [items]
    if not isinstance(items, list) or not items or not isinstance(dimensions, int) or not (
            0 < dimensions <= MAX_DIMENSIONS):
        error = {"message": "the stub cannot embed that", "type": "invalid_request_error"}
        return 400, json.dumps({"error": error}).encode()
    data = []
    for index, item in enumerate(items):
        vector = stub_embedding(item, dimensions)
        packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index,
                     "embedding": packed if body.get("encoding_format") == "base64" else vector})
    tokens = sum(len(i) if isinstance(i, list) else len(tokens_of(str(i))) for i in items)
    return 200, json.dumps({
        "object": "list", "data": data, "model": body.get("model", "stub"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "stub_request_sha256": body_digest(body),
    }).encode()


async def _body(receive: Receive) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def _completion(
    pieces: list[str], chat: bool, body: dict[str, Any], finish: str
) -> dict[str, Any]:
    text = "".join(pieces)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return {
        "id": "stub", "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()), "model": body.get("model", "stub"), "choices": [choice],
        "usage": usage_counts(pieces),
    }


def _events(pieces: list[str], chat: bool, finish: str) -> list[dict[str, Any]]:
    """One event per piece, the last with the finish reason, then the usage event."""
    events = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish if last else None}
        choice.update({"delta": {"content": piece}} if chat else {"text": piece})
        events.append({"id": "stub", "object": "chat.completion.chunk", "created": 0,
                       "model": "stub", "choices": [choice]})
    return [*events, {"id": "stub", "choices": [], "usage": usage_counts(pieces)}]


def _writes(
    events: list[dict[str, Any]], pieces: list[str], chunk_seed: int | None
) -> list[tuple[bytes, bool]]:
    """The stream's writes, each with whether it waits for the delay first: one event per
    write (the usage event and ``[DONE]`` follow the last at once), or seeded random cuts."""
    *rest, usage = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
    tail = usage + b"data: [DONE]\n\n"
    if chunk_seed is None:
        return [(e, True) for e in rest] + [(tail, False)]
    data, writes, start = b"".join(rest) + tail, [], 0
    rng = random.Random(f"{chunk_seed}:{''.join(pieces)}")
    while start < len(data):
        size = rng.randint(1, 40) if rng.random() < 0.5 else rng.randint(100, 600)
        writes.append((data[start : start + size], True))
        start += size
    return writes


async def _stream(send: Send, writes: list[tuple[bytes, bool]], delay_s: float) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for i, (data, waits) in enumerate(writes):
        if waits:
            await asyncio.sleep(delay_s)
        await send({"type": "http.response.body", "body": data, "more_body": i < len(writes) - 1})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--echo", action="store_true", help="answer with the request's own text")
    parser.add_argument("--event-delay-ms", type=float, help="pause before each write")
    parser.add_argument("--chunk-seed", type=int, default=None, help="seeded random SSE writes")
    parser.add_argument("--rich", action="store_true",
                        help="answers with OpenAI's metadata, logprobs and unknown fields")
    args = parser.parse_args()
    app = build_app(
        latency_ms=args.latency_ms, tokens=args.tokens, echo=args.echo,
        event_delay_ms=args.event_delay_ms, chunk_seed=args.chunk_seed, rich=args.rich,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
