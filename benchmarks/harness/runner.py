"""Asking probes: the server's request path in-process, the same over HTTP, and a cached loop.

:class:`InProcessAsker` calls :meth:`proxy.pipeline.Pipeline.answer`, the lifecycle the server
runs for a non-streaming request, on a live pipeline;
:class:`HttpAsker` sends the same request to a running ``unlearn-proxy`` and reads the same
outcome from its response. :func:`run_tasks` asks what the cache does not hold yet, batching
the generation where the engine can.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import httpx
from tqdm import tqdm

from benchmarks.errors import BenchmarkError
from benchmarks.harness.backends import RecordingBackend
from benchmarks.harness.cache import ResultCache
from benchmarks.harness.tasks import Task
from proxy.pipeline import Pipeline, Request

__all__ = ["Asker", "HttpAsker", "InProcessAsker", "Outcome", "run_tasks"]

PREFETCH_BATCHES = 4


@dataclass(frozen=True)
class Outcome:
    """What a client saw for one request, plus what it cost."""

    text: str
    finish_reason: str
    blocked: bool
    prompt_tokens: int
    completion_tokens: int
    added_ms: float
    total_ms: float
    cost_ms: float = 0.0  # wall time the harness spent on it (its share of a batch included)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache line)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """Inverse of :meth:`to_record` (extra keys ignored; older lines lack ``cost_ms``)."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})


class Asker(Protocol):
    """Sends one request for one variant and reports what came back."""

    async def ask(self, request: Request) -> Outcome: ...


class InProcessAsker:
    """One variant on an in-process pipeline; added latency = request time - engine time."""

    def __init__(self, pipeline: Pipeline, policy_name: str | None, *, model: str,
                 backend: RecordingBackend) -> None:
        self.pipeline, self.policy_name, self.backend = pipeline, policy_name, backend
        self.model = model

    async def ask(self, request: Request) -> Outcome:
        request = replace(request, model=self.model)
        self.backend.reset()
        started = time.perf_counter()
        reply = await self.pipeline.answer(request, self.policy_name)
        total_ms = (time.perf_counter() - started) * 1000
        return Outcome(reply.text, reply.finish_reason, reply.blocked, reply.usage.prompt_tokens,
                       reply.usage.completion_tokens,
                       added_ms=total_ms - self.backend.elapsed_ms, total_ms=total_ms)

    async def prepare(self, request: Request) -> Request | None:
        """The request the model would see, or ``None`` when the input side blocks it."""
        decision, prepared = await self.pipeline.admit(replace(request, model=self.model),
                                                       self.policy_name)
        return None if decision.blocking is not None else prepared

    async def prefetch(self, requests: Sequence[Request]) -> None:
        """Generate what the model will be asked for ``requests`` in batches (when its engine
        batches), so that :meth:`ask` then takes the full request path answered from memory."""
        prepared = [await self.prepare(r) for r in requests]
        await self.backend.prefetch([p for p in prepared if p is not None])


class HttpAsker:
    """One variant behind a running proxy, selected by its client key.

    Added latency is the proxy's own ``x-unlearn-overhead-ms`` (input side only).
    """

    def __init__(self, client: httpx.AsyncClient, url: str, api_key: str, *, model: str) -> None:
        self.client, self.url, self.api_key = client, url.rstrip("/"), api_key
        self.model = model

    async def ask(self, request: Request) -> Outcome:
        params = request.params
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "stop": list(params.stop),
                                "seed": params.seed}
        chat = request.kind == "chat"
        body.update({"messages": request.messages} if chat else {"prompt": request.prompt})
        path = "/v1/chat/completions" if chat else "/v1/completions"
        started = time.perf_counter()
        response = await self.client.post(
            f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {self.api_key}"})
        total_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise BenchmarkError(f"proxy answered {response.status_code}: {response.text[:500]}")
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Outcome(
            choice["message"]["content"] or "" if chat else choice["text"],
            choice["finish_reason"], response.headers.get("x-unlearn-decision") == "block",
            int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
            added_ms=float(response.headers.get("x-unlearn-overhead-ms", 0.0)), total_ms=total_ms)


def run_tasks(loop: asyncio.Runner, asker: Asker, tasks: Sequence[Task], cache: ResultCache,
              *, desc: str) -> dict[str, Outcome]:
    """Outcomes of ``tasks`` by key; only requests missing from ``cache`` are sent, and each
    records its ``cost_ms``, so a resumed run reports the same row wall times.

    In-process on an engine that batches, each run of :data:`PREFETCH_BATCHES` batches is
    generated at once first (:meth:`InProcessAsker.prefetch`).
    """
    unique = {task.key: task for task in tasks}
    pending = [task for key, task in unique.items() if cache.get(key) is None]
    batcher = asker if isinstance(asker, InProcessAsker) and asker.backend.batch_size > 1 else None
    step = batcher.backend.batch_size * PREFETCH_BATCHES if batcher else len(pending) or 1
    with tqdm(total=len(pending), desc=desc, unit="req", leave=False,
              disable=not pending) as progress:
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            started = time.perf_counter()
            if batcher is not None:
                loop.run(batcher.prefetch([task.request for task in chunk]))
            share_ms = (time.perf_counter() - started) * 1000 / len(chunk)
            for task in chunk:
                outcome = loop.run(asker.ask(task.request))
                outcome = replace(outcome, cost_ms=outcome.total_ms + share_ms)
                cache.put(task.key, {"probe_id": task.probe.id, **outcome.to_record()})
                progress.update()
    return {key: Outcome.from_record(cache.get(key) or {}) for key in unique}
