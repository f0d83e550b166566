"""A minimal OpenAI-compatible upstream with configurable latency, for load and overhead runs.

    python -m benchmarks.stub_upstream --port 9100 --latency-ms 20 --tokens 16

It answers chat and completion requests (streaming and not) with a fixed text, after
``latency-ms`` (spread over the tokens when streaming). It stands in for a real model server so
that what is measured is the proxy, not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

WORDS = "the quick brown fox jumps over the lazy dog while the band plays on".split()

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def build_app(*, latency_ms: float, tokens: int) -> App:
    """The stub app: ``tokens`` words after ``latency_ms`` milliseconds.

    A bare ASGI app (no framework), so that the stub costs as little as possible of a CPU it
    shares with the proxy it stands in front of.
    """
    pieces = [WORDS[i % len(WORDS)] + " " for i in range(tokens)]

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await _send(send, 200, b"application/json", b'{"status":"ok"}')
        elif scope["method"] == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            body = json.loads(await _body(receive))
            chat = path.endswith("/chat/completions")
            if body.get("stream"):
                await _stream(send, pieces, chat, latency_ms)
            else:
                await asyncio.sleep(latency_ms / 1000)
                await _send(send, 200, b"application/json", _completion(pieces, chat, body))
        else:
            await _send(send, 404, b"application/json", b'{"error":{"message":"not found"}}')

    return app


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


def _completion(pieces: list[str], chat: bool, body: dict[str, Any]) -> bytes:
    text = "".join(pieces)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return json.dumps({
        "id": "stub", "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()), "model": body.get("model", "stub"), "choices": [choice],
        "usage": {"prompt_tokens": 8, "completion_tokens": len(pieces),
                  "total_tokens": 8 + len(pieces)},
    }).encode()


async def _stream(send: Send, pieces: list[str], chat: bool, latency_ms: float) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    delay = latency_ms / 1000 / max(1, len(pieces))
    for i, piece in enumerate(pieces):
        await asyncio.sleep(delay)
        finish = "length" if i == len(pieces) - 1 else None
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        choice.update({"delta": {"content": piece}} if chat else {"text": piece})
        event = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                 "choices": [choice]}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                    "more_body": True})
    usage = {"prompt_tokens": 8, "completion_tokens": len(pieces), "total_tokens": 8 + len(pieces)}
    tail = f"data: {json.dumps({'id': 'stub', 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail.encode()})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    app = build_app(latency_ms=args.latency_ms, tokens=args.tokens)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
