"""Test helpers: real servers on free loopback ports (in a thread, or as a subprocess)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from benchmarks.processes import free_port, process_output, python_server, wait_healthy
from benchmarks.processes import proxy_server as process_server

__all__ = [
    "bag_of_words", "bag_of_words_embedder", "fake_embedder", "fake_upstream", "free_port",
    "process_output", "process_server", "stub_upstream_process", "thread_server", "write_config",
]

ChatHandler = Callable[[Request], Awaitable[Any]]


def fake_upstream(chat: ChatHandler, *, embeddings: ChatHandler | None = None) -> FastAPI:
    """Fault injection only: an app with ``/healthz`` whose chat completions ``chat`` answers."""
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.post("/v1/chat/completions")(chat)
    if embeddings is not None:
        app.post("/v1/embeddings")(embeddings)
    return app


def bag_of_words(text: str) -> list[float]:
    """A cheap embedding for fake embedding servers: a unit vector of hashed words and
    punctuation (like a tokenizer, it raises on a lone surrogate)."""
    vector = np.zeros(64)
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % 64] += 1.0
    return (vector / (np.linalg.norm(vector) or 1.0)).tolist()


async def _bag_of_words_embeddings(request: Request) -> Any:
    try:
        texts = (await request.json())["input"]
    except ClientDisconnect:  # a proxy killed mid-request: no one to answer
        return Response(status_code=499)
    return {"object": "list", "data": [
        {"index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)]}


async def _not_a_chat_model(request: Request) -> JSONResponse:
    return JSONResponse({"error": {"message": "not a chat model"}}, status_code=404)


def fake_embedder(embeddings: ChatHandler) -> FastAPI:
    """Fault injection only: an OpenAI-style embedding server (no chat model) whose
    ``/v1/embeddings`` ``embeddings`` answers."""
    return fake_upstream(_not_a_chat_model, embeddings=embeddings)


def bag_of_words_embedder() -> FastAPI:
    """An OpenAI-style embedding server (no chat model) answering with :func:`bag_of_words`
    vectors at once: a policy's embedder that costs next to nothing."""
    return fake_embedder(_bag_of_words_embeddings)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def thread_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout_s=60)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def stub_upstream_process(*options: str) -> Iterator[str]:
    """``benchmarks.stub_upstream`` with ``options`` as a subprocess on a free port; yields its
    base URL."""
    port = free_port()
    args = ["benchmarks.stub_upstream", "--port", str(port), *options]
    with python_server(args, port=port) as (url, _):
        yield url


class SlowUpstream:
    """A chat handler (for :func:`fake_upstream`) that answers only after ``slow_s`` seconds;
    it counts its calls and those that ran to the end, and releases ``abandoned`` for each
    whose client (the proxy) hung up first."""

    def __init__(self, slow_s: float) -> None:
        self.slow_s = slow_s
        self.started = 0
        self.finished = 0
        self.abandoned = threading.Semaphore(0)

    async def chat(self, request: Request) -> JSONResponse:
        self.started += 1
        deadline = time.monotonic() + self.slow_s
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                self.abandoned.release()
                return JSONResponse({}, status_code=499)
            await asyncio.sleep(0.02)
        self.finished += 1
        return JSONResponse({"error": {"message": "too late"}}, status_code=500)
