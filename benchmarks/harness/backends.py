"""Backend wrappers for in-process runs: a timing/memoising one and a detection oracle.

:class:`RecordingBackend` sits between the pipeline and the real engine: it times every call
(so the latency a method adds is the request time minus the engine time) and answers a repeated
greedy request from memory (a guard that lets a request through sends the model exactly the
prompt the no-defence row sent), and on an engine that batches it can answer a list of
requests up front (:meth:`RecordingBackend.prefetch`). :class:`OracleBackend` always answers
with the gold answer: against it, a method's block rate is its detection rate (forget probes)
or false-positive rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from benchmarks.errors import BenchmarkError
from proxy.backends.base import Backend, Capabilities, Message, approx_token_count
from proxy.core.types import Chunk, Generation, GenerationParams, Usage
from proxy.pipeline import Request

__all__ = ["BatchGenerator", "OracleBackend", "RecordingBackend"]


@runtime_checkable
class BatchGenerator(Protocol):
    """An engine that answers many prompts at once (the transformers backend)."""

    batch_size: int

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]: ...

    def generate_chat(self, conversations: Sequence[Sequence[Message]],
                      params: GenerationParams) -> list[Generation]: ...


class RecordingBackend:
    """Wraps ``inner``; ``elapsed_ms`` accumulates engine time since :meth:`reset`."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.capabilities: Capabilities = inner.capabilities
        self.elapsed_ms = 0.0
        self.prefetch_ms = 0.0
        self.calls = 0
        self._memo: dict[str, Generation] = {}

    def reset(self) -> None:
        """Start timing a new request."""
        self.elapsed_ms = 0.0

    @property
    def batch_size(self) -> int:
        """How many prompts :meth:`prefetch` gives the engine at once (1: it does not batch)."""
        return self.inner.batch_size if isinstance(self.inner, BatchGenerator) else 1

    async def prefetch(self, requests: Sequence[Request]) -> None:
        """Answer the greedy ``requests`` in batches now (when the engine batches), so that
        sending them one by one through the pipeline answers from memory."""
        inner = self.inner
        if not isinstance(inner, BatchGenerator):
            return
        groups: dict[str, list[Request]] = {}  # same kind and params: one batched call
        for request in requests:
            key = self._key(request.kind, _payload(request), request.params)
            if request.params.temperature == 0 and key not in self._memo:
                groups.setdefault(f"{request.kind} {request.params!r}", []).append(request)
        for group in groups.values():
            kind, params = group[0].kind, group[0].params
            payloads = [_payload(r) for r in group]
            started = time.perf_counter()
            if kind == "chat":
                answers = await asyncio.to_thread(inner.generate_chat, payloads, params)
            else:
                answers = await asyncio.to_thread(inner.generate, payloads, params)
            self.prefetch_ms += (time.perf_counter() - started) * 1000
            self.calls += len(answers)
            self._memo.update((self._key(kind, payload, params), answer)
                              for payload, answer in zip(payloads, answers, strict=True))

    @staticmethod
    def _key(kind: str, payload: object, params: GenerationParams) -> str:
        return json.dumps([kind, payload, repr(params)], ensure_ascii=False, default=str)

    async def _generate(self, kind: str, payload: object, params: GenerationParams) -> Generation:
        key = self._key(kind, payload, params)
        if params.temperature == 0 and key in self._memo:
            return self._memo[key]
        started = time.perf_counter()
        if kind == "chat":
            generation = await self.inner.chat(payload, params)  # type: ignore[arg-type]
        else:
            generation = await self.inner.complete(str(payload), params)
        self.elapsed_ms += (time.perf_counter() - started) * 1000
        self.calls += 1
        if params.temperature == 0:
            self._memo[key] = generation
        return generation

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        return await self._generate("chat", list(messages), params)

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        return await self._generate("completion", prompt, params)

    def stream_chat(self, messages: Sequence[Message],
                    params: GenerationParams) -> AsyncIterator[Chunk]:
        return self.inner.stream_chat(messages, params)

    def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self.inner.stream_complete(prompt, params)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"RecordingBackend({self.inner!r}, calls={self.calls}, memo={len(self._memo)})"


def _payload(request: Request) -> Any:
    """What the pipeline hands the engine for ``request`` (see ``Pipeline.generate``)."""
    return list(request.messages) if request.kind == "chat" else request.prompt or ""


class OracleBackend:
    """Answers every known prompt with its gold answer; a known prompt is found inside what a
    policy made of it (after a prefix, inside an ICUL template), the longest one winning."""

    capabilities = Capabilities()

    def __init__(self, answers: Mapping[str, str]) -> None:
        self._answers = sorted(answers.items(), key=lambda item: -len(item[0]))

    def _answer(self, text: str) -> Generation:
        gold = next((a for prompt, a in self._answers if prompt in text), None)
        if gold is None:
            raise BenchmarkError(f"oracle: no gold answer for the prompt {text[-120:]!r}")
        return Generation(f" {gold}", "stop", Usage(approx_token_count(text),
                                                    approx_token_count(gold)))

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        users = [m for m in messages if m.get("role") == "user"]
        return self._answer(str(users[-1].get("content", "")) if users else "")

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        return self._answer(prompt)

    async def stream_chat(self, messages: Sequence[Message],
                          params: GenerationParams) -> AsyncIterator[Chunk]:
        generation = await self.chat(messages, params)
        yield Chunk(generation.text, generation.finish_reason, generation.usage)

    async def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        generation = await self.complete(prompt, params)
        yield Chunk(generation.text, generation.finish_reason, generation.usage)

    def count_tokens(self, text: str) -> int:
        return approx_token_count(text)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"OracleBackend(answers={len(self._answers)})"
