"""In-process GGUF models through llama-cpp-python; the default is the embedded Gemma 3 270M."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Any

from proxy.backends.base import (
    DEFAULT_TEMPERATURE, Capabilities, Message, check_supported,
)
from proxy.core.types import Chunk, Generation, GenerationParams, Usage
from proxy.core.embedded import embedded_gguf_path, require_file
from proxy.backends.threaded import iterate_in_thread, run_locked
from proxy.backends.transcript import render_transcript, strip_stream, with_transcript_stops
from proxy.core.config import LlamaCppModelConfig
from proxy.core.errors import ConfigError


def default_threads() -> int:
    """llama.cpp threads when none are configured: the CPUs this process may run on, at most
    4. A container limited to some CPUs (a cpuset) still reports all of the host's in
    ``os.cpu_count()``, and llama.cpp threads beyond the usable CPUs wait on each other."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(usable or 1, 4)


class LlamaCppBackend:
    """A llama.cpp model; one generation at a time (llama.cpp contexts are not thread-safe)."""

    capabilities = Capabilities(max_n=1)

    def __init__(self, cfg: LlamaCppModelConfig) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError("backend 'llama_cpp' needs llama-cpp-python installed") from None
        path = require_file(cfg.model_path, "model_path") if cfg.model_path else embedded_gguf_path()
        self._cfg = cfg
        self.model_path = path
        threads = cfg.n_threads or default_threads()
        chat_format = None if cfg.chat_format in (None, "transcript") else cfg.chat_format
        self._llama = Llama(
            model_path=str(path), n_ctx=cfg.n_ctx, n_threads=threads, seed=cfg.seed,
            chat_format=chat_format, verbose=False,
        )
        has_template = "tokenizer.chat_template" in self._llama.metadata
        self.uses_transcript = cfg.chat_format == "transcript" or (
            cfg.chat_format is None and not has_template
        )
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: LlamaCppModelConfig, *, public_model: str) -> LlamaCppBackend:
        return cls(cfg)

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model_path={str(self.model_path)!r})"

    def _kwargs(self, params: GenerationParams) -> dict[str, Any]:
        check_supported(params, self.capabilities, "llama_cpp")
        temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_tokens or self._cfg.max_tokens_default,
            "temperature": temperature,
            "stop": list(params.stop),
        }
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        if self.uses_transcript:
            generation = await self.complete(render_transcript(messages), _transcript(params))
            return replace(generation, text=generation.text.strip())
        kwargs = self._kwargs(params)
        result = await run_locked(
            lambda: self._llama.create_chat_completion(messages=list(messages), **kwargs),
            self._lock,
        )
        choice = result["choices"][0]
        return _generation(choice["message"].get("content") or "", choice, result["usage"])

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        kwargs = self._kwargs(params)
        result = await run_locked(
            lambda: self._llama.create_completion(prompt=prompt, **kwargs), self._lock
        )
        choice = result["choices"][0]
        return _generation(choice["text"], choice, result["usage"])

    async def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]:
        if self.uses_transcript:
            source = self.stream_complete(render_transcript(messages), _transcript(params))
            async for chunk in strip_stream(source):
                yield chunk
            return
        kwargs = self._kwargs(params)

        def events() -> Iterator[Any]:
            return iter(
                self._llama.create_chat_completion(messages=list(messages), stream=True, **kwargs)
            )

        completion_tokens = 0
        async for event in iterate_in_thread(events, self._lock):
            choice = event["choices"][0]
            text = choice["delta"].get("content") or ""
            completion_tokens += 1 if text else 0
            if text or choice.get("finish_reason"):
                yield Chunk(text, choice.get("finish_reason"))
        yield Chunk(usage=Usage(self._chat_prompt_tokens(messages), completion_tokens))

    async def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        kwargs = self._kwargs(params)

        def events() -> Iterator[Any]:
            return iter(self._llama.create_completion(prompt=prompt, stream=True, **kwargs))

        completion_tokens = 0
        async for event in iterate_in_thread(events, self._lock):
            choice = event["choices"][0]
            completion_tokens += 1 if choice["text"] else 0
            yield Chunk(choice["text"], choice.get("finish_reason"))
        yield Chunk(usage=Usage(self.count_tokens(prompt), completion_tokens))

    def _chat_prompt_tokens(self, messages: Sequence[Message]) -> int:
        text = "".join(str(m.get("content") or "") for m in messages)
        return self.count_tokens(text) + 4 * len(messages)

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0

    async def aclose(self) -> None:
        self._llama.close()


def _transcript(params: GenerationParams) -> GenerationParams:
    return replace(params, stop=tuple(with_transcript_stops(params.stop)))


def _generation(text: str, choice: dict[str, Any], usage: dict[str, Any]) -> Generation:
    return Generation(
        text,
        choice.get("finish_reason") or "stop",
        Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])),
    )
