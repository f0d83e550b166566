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
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = "the quick brown fox jumps over the lazy dog while the band plays on".split()


def build_app(*, latency_ms: float, tokens: int) -> Starlette:
    """The stub app: ``tokens`` words after ``latency_ms`` milliseconds."""
    pieces = [WORDS[i % len(WORDS)] + " " for i in range(tokens)]

    async def completions(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        chat = request.url.path.endswith("/chat/completions")
        if body.get("stream"):
            return StreamingResponse(_stream(pieces, chat, latency_ms), media_type="text/event-stream")
        await asyncio.sleep(latency_ms / 1000)
        text = "".join(pieces)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return JSONResponse({
            "id": "stub", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model", "stub"), "choices": [choice],
            "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens},
        })

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/healthz", healthz),
    ])


async def _stream(pieces: list[str], chat: bool, latency_ms: float) -> AsyncIterator[bytes]:
    delay = latency_ms / 1000 / max(1, len(pieces))
    for i, piece in enumerate(pieces):
        await asyncio.sleep(delay)
        finish = "length" if i == len(pieces) - 1 else None
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        choice.update({"delta": {"content": piece}} if chat else {"text": piece})
        event = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                 "choices": [choice]}
        yield f"data: {json.dumps(event)}\n\n".encode()
    usage = {"prompt_tokens": 8, "completion_tokens": len(pieces), "total_tokens": 8 + len(pieces)}
    yield f"data: {json.dumps({'id': 'stub', 'choices': [], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"


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
