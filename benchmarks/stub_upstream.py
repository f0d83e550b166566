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
beyond the text (``system_fingerprint``, ``service_tier``, usage details, the logprobs of each
token with alternatives) and an unknown ``x_stub`` field at each level (answer, choice,
message or delta, usage): a passthrough test's upstream. ``GET /last-request`` returns the
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
import re
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

WORDS = "the quick brown fox jumps over the lazy dog while the band plays on".split()
_TOKEN = re.compile(r"\s*\S{1,5}|\s+")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def tokens_of(text: str) -> list[str]:
    """``text`` cut into the pieces an echoing stub streams (joined, they give ``text``)."""
    return _TOKEN.findall(text)


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
            pieces = tokens_of(_request_text(body, chat)) if echo else fixed
            finish = "stop" if echo else "length"
            if body.get("stream"):
                delay_ms = latency_ms / max(1, len(pieces))
                delay_s = (delay_ms if event_delay_ms is None else event_delay_ms) / 1000
                events = (rich_events if rich else _events)(pieces, chat, finish)
                await _stream(send, _writes(events, pieces, chunk_seed), delay_s)
            else:
                await asyncio.sleep(latency_ms / 1000)
                answer = rich_answer(pieces, chat, finish) if rich else _completion(
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


def _usage(pieces: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": len(pieces), "total_tokens": 8 + len(pieces)}


def _completion(
    pieces: list[str], chat: bool, body: dict[str, Any], finish: str
) -> dict[str, Any]:
    text = "".join(pieces)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return {
        "id": "stub", "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()), "model": body.get("model", "stub"), "choices": [choice],
        "usage": _usage(pieces),
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
    return [*events, {"id": "stub", "choices": [], "usage": _usage(pieces)}]


# --rich: what OpenAI sends beside the text, and an unknown field at every level
FINGERPRINT = {"service_tier": "default", "system_fingerprint": "fp_stub_0001"}
UNKNOWN = {"x_stub": {"note": "an unknown field", "ok": True}}


def _rich_usage(pieces: list[str]) -> dict[str, Any]:
    return {**_usage(pieces),
            "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
            **UNKNOWN}


def _token(piece: str, i: int) -> dict[str, Any]:
    return {"token": piece, "logprob": -0.25 * (i % 4), "bytes": list(piece.encode())}


def rich_logprobs(pieces: list[str], chat: bool, start: int = 0) -> dict[str, Any]:
    """The logprobs of ``pieces`` (one token each, the first the answer's ``start``-th), each
    with one alternative, ``ALT``."""
    if chat:
        content = [{**_token(p, i), "top_logprobs": [_token(p, i), _token("ALT", i + 1)]}
                   for i, p in enumerate(pieces, start)]
        return {"content": content, "refusal": None}
    return {"tokens": list(pieces), "token_logprobs": [-0.25 * (i % 4) for i, _ in
                                                       enumerate(pieces, start)],
            "top_logprobs": [{p: -0.25, "ALT": -1.5} for p in pieces],
            "text_offset": [len("".join(pieces[:i])) for i in range(len(pieces))]}


def rich_answer(pieces: list[str], chat: bool, finish: str) -> dict[str, Any]:
    """A complete answer with everything ``--rich`` adds."""
    text = "".join(pieces)
    choice: dict[str, Any] = {"index": 0}
    if chat:
        choice["message"] = {"role": "assistant", "content": text, "refusal": None,
                             "annotations": [], **UNKNOWN}
    else:
        choice["text"] = text
    choice.update({"logprobs": rich_logprobs(pieces, chat), "finish_reason": finish, **UNKNOWN})
    return {"id": "stub-rich", "object": "chat.completion" if chat else "text_completion",
            "created": 1700000000, "model": "stub", "choices": [choice],
            "usage": _rich_usage(pieces), **FINGERPRINT, **UNKNOWN}


def rich_events(pieces: list[str], chat: bool, finish: str) -> list[dict[str, Any]]:
    """A stream with everything ``--rich`` adds, shaped as OpenAI's: an opening event (chat),
    one event per piece with its token's logprobs, a finish event, the usage event."""
    base = {"id": "stub-rich", "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 1700000000, "model": "stub", **FINGERPRINT}
    events: list[dict[str, Any]] = []

    def add(part: dict[str, Any], logprobs: Any, finish_reason: str | None) -> None:
        choice = {"index": 0, **part, "logprobs": logprobs, "finish_reason": finish_reason}
        events.append({**base, "choices": [{**choice, **UNKNOWN}], **UNKNOWN})

    if chat:
        add({"delta": {"role": "assistant", "content": "", "refusal": None}}, None, None)
    for i, piece in enumerate(pieces):
        part = {"delta": {"content": piece, **UNKNOWN}} if chat else {"text": piece}
        add(part, rich_logprobs([piece], chat, i), None)
    add({"delta": {}} if chat else {"text": ""}, None, finish)
    return [*events, {**base, "choices": [], "usage": _rich_usage(pieces), **UNKNOWN}]


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
