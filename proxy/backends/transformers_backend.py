"""The white-box backend: a causal LM in this process through torch and transformers.

Besides chat and completion it offers what only open weights allow: batched generation and
log-likelihoods for the harness (tiers L and W), assistant prefill, and the live ``model`` that
weight-based unlearning fine-tunes before evaluating through this same backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2
import torch
from transformers import PreTrainedModel
from transformers.generation.streamers import BaseStreamer

from proxy.core.messages import message_text
from proxy.backends import hf_generation as gen
from proxy.backends.base import Capabilities, Message, check_supported
from proxy.backends.hf_loader import ModelInfo, load_causal_lm
from proxy.backends.hf_scoring import Score, score_pairs
from proxy.backends.mixing import mix_models
from proxy.backends.transcript import render_transcript, with_transcript_stops
from proxy.core.config import TransformersModelConfig
from proxy.core.errors import ConfigError
from proxy.core.types import Chunk, Generation, GenerationParams


class _QueueStreamer(BaseStreamer):
    """Hands each new token id from the generating thread to an asyncio queue."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[int] | None]
    ) -> None:
        self._loop, self._queue, self._prompt_seen = loop, queue, False

    def _send(self, item: list[int] | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def put(self, value: torch.Tensor) -> None:
        if self._prompt_seen:
            self._send(value.flatten().tolist())
        self._prompt_seen = True  # generate() passes the prompt first

    def end(self) -> None:
        self._send(None)


def _merge_system(messages: list[Message]) -> list[Message]:
    """Fold system/developer messages into the first user turn (for templates without them)."""
    system = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    rest = [dict(m) for m in messages if m["role"] not in ("system", "developer")]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = "\n\n".join([*system, rest[0]["content"]])
    elif system:
        rest.insert(0, {"role": "user", "content": "\n\n".join(system)})
    return rest


_BASES: dict[tuple[str | None, str], tuple[PreTrainedModel, Any, ModelInfo]] = {}
_BASES_LOCK = threading.Lock()


def _load_mixed(cfg: TransformersModelConfig) -> tuple[PreTrainedModel, Any, ModelInfo]:
    """The base model with ``cfg.weights`` mixed in at ``cfg.mix_alpha`` (model mixing,
    :func:`proxy.backends.mixing.mix_models`: α = 0 is the base exactly, α = 1 the weights).

    The parameters the state does not name are *shared* with one cached copy of the base model
    per ``(model_path, device)``, so a sweep of α over a baseline that froze the embeddings
    costs little memory; such a model is for inference (do not fine-tune it in place).
    """
    path = Path(cfg.weights or "").expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"weights: cannot read a parameter state from {path}: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights: {path} is not a {{name: tensor}} parameter state")
    key = (cfg.model_path, cfg.device)
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES[key] = load_causal_lm(cfg.model_path, device=cfg.device)
    started = time.perf_counter()
    base, tokenizer, info = _BASES[key]
    params = dict(base.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ConfigError(f"weights: {path} names parameters the model lacks: {unknown[:5]}")
    shared = {id(p): p for name, p in params.items() if name not in state}
    model = copy.deepcopy(base, shared)  # copies only the parameters the state names
    own = dict(model.named_parameters())
    with torch.no_grad():
        try:
            mixed = mix_models({name: params[name].detach() for name in state}, state,
                               cfg.mix_alpha)
        except ValueError as exc:  # BaselineConfigError / BaselineDataError
            raise ConfigError(f"weights: {path}: {exc}") from None
        for name, value in mixed.items():
            own[name].copy_(value)
    model.eval()
    label = f"{info.model_id}+{path.parent.name}/{path.stem}@{cfg.mix_alpha:g}"
    return model, tokenizer, dataclasses.replace(
        info, model_id=label, load_s=info.load_s + time.perf_counter() - started)


class TransformersBackend:
    """A causal LM run in-process; torch work happens in a worker thread behind one lock.

    ``model`` and ``tokenizer`` are the live objects: weight-based unlearning may fine-tune
    ``model`` in place and evaluate through this backend (generation always runs in eval mode).
    """

    capabilities = Capabilities(logprobs=True, prefill=True, weights=True, max_n=1)

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: gen.Tokenizer,
        *,
        info: ModelInfo | None = None,
        batch_size: int = 8,
        max_tokens_default: int = 256,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.batch_size = batch_size
        self.max_tokens_default = max_tokens_default
        self.uses_transcript = tokenizer.chat_template is None
        self._lock = threading.RLock()
        self._eos = gen.eos_ids(model, tokenizer)

    @classmethod
    def from_config(
        cls, cfg: TransformersModelConfig, *, public_model: str | None = None
    ) -> TransformersBackend:
        """Load the configured model (the embedded Gemma when ``model_path`` is unset).

        ``public_model`` is accepted for the registry's uniform call and not needed here.
        With ``weights`` (a trained-parameter state, e.g. a weight-based unlearning baseline),
        the served model is the mix ``(1 - mix_alpha) * base + mix_alpha * weights`` of the
        parameters the state names (:func:`_load_mixed`).
        Raises ConfigError naming ``model_path``, ``device`` or ``weights``.
        """
        if cfg.weights is None:
            model, tokenizer, info = load_causal_lm(cfg.model_path, device=cfg.device)
        else:
            model, tokenizer, info = _load_mixed(cfg)
        return cls(
            model,
            tokenizer,
            info=info,
            batch_size=cfg.batch_size,
            max_tokens_default=cfg.max_tokens_default,
        )

    def __repr__(self) -> str:
        name = self.info.model_id if self.info else type(self.model).__name__
        return f"TransformersBackend(model={name!r}, device={str(self.model.device)!r})"

    # ------------------------------------------------------------------ prompts

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The chat prompt; a final assistant message is continued (prefill).

        Uses the tokenizer's chat template, or for a base model without one (the embedded
        Gemma) the ``Q:``/``A:`` transcript that the llama.cpp backend uses too.
        """
        plain = [{"role": m["role"], "content": message_text(m)} for m in messages]
        prefill = bool(plain) and plain[-1]["role"] == "assistant"
        if self.uses_transcript:
            if prefill:
                return f"{render_transcript(plain[:-1])} {plain[-1]['content']}"
            return render_transcript(plain)
        kwargs = {"add_generation_prompt": not prefill, "continue_final_message": prefill}
        try:
            text = self.tokenizer.apply_chat_template(plain, tokenize=False, **kwargs)
        except jinja2.TemplateError:
            merged = _merge_system(plain)
            text = self.tokenizer.apply_chat_template(merged, tokenize=False, **kwargs)
        return str(text)

    def _chat_params(self, params: GenerationParams) -> GenerationParams:
        if not self.uses_transcript:
            return params
        return replace(params, stop=tuple(with_transcript_stops(params.stop)))

    def _strips(self, messages: Sequence[Message]) -> bool:
        """Transcript answers are stripped (as llama.cpp's are), except continued prefills."""
        return self.uses_transcript and not (messages and messages[-1]["role"] == "assistant")

    # ------------------------------------------------------------------ harness (sync, batched)

    def generate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """Answers to raw prompts, batched ``batch_size`` at a time with left padding."""
        return self.generate_ids([gen.encode_text(self.tokenizer, p) for p in prompts], params)

    def generate_chat(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams
    ) -> list[Generation]:
        """Answers to conversations (see :meth:`render_chat`), batched like :meth:`generate`."""
        rows = [gen.encode_text(self.tokenizer, self.render_chat(c)) for c in conversations]
        answers = self.generate_ids(rows, self._chat_params(params))
        return [
            replace(g, text=g.text.strip()) if self._strips(c) else g
            for g, c in zip(answers, conversations, strict=True)
        ]

    def generate_ids(
        self, rows: Sequence[Sequence[int]], params: GenerationParams
    ) -> list[Generation]:
        """Answers to tokenised prompts, longest first in batches; results in input order."""
        check_supported(params, self.capabilities, "transformers")
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: dict[int, Generation] = {}
        with self._torch_session(params.seed):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = self._generate_batch([rows[i] for i in chunk], params)
                results.update(zip(chunk, batch, strict=True))
        return [results[i] for i in range(len(rows))]

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """``(sum log-prob, is_greedy)`` of each continuation given its context."""
        return [(s.logprob, s.is_greedy) for s in self._score(pairs)]

    def loglikelihood_tokens(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """``(sum log-prob, number of continuation tokens)`` of each pair (TOFU probabilities)."""
        return [(s.logprob, s.n_tokens) for s in self._score(pairs)]

    async def agenerate(self, prompts: Sequence[str], params: GenerationParams) -> list[Generation]:
        """:meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, prompts, params)

    async def aloglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """:meth:`loglikelihood` in a worker thread."""
        return await asyncio.to_thread(self.loglikelihood, pairs)

    # ------------------------------------------------------------------ server protocol

    async def chat(self, messages: Sequence[Message], params: GenerationParams) -> Generation:
        return (await asyncio.to_thread(self.generate_chat, [messages], params))[0]

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        return (await self.agenerate([prompt], params))[0]

    def stream_chat(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[Chunk]:
        row = gen.encode_text(self.tokenizer, self.render_chat(messages))
        return self._stream(row, self._chat_params(params), strip=self._strips(messages))

    def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self._stream(gen.encode_text(self.tokenizer, prompt), params, strip=False)

    async def aclose(self) -> None:
        """Nothing to release: the model is freed with the backend."""

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _torch_session(self, seed: int | None) -> Iterator[None]:
        """Hold the lock, seed torch, and run in eval mode without autograd."""
        with self._lock, torch.inference_mode():
            was_training = self.model.training
            self.model.eval()
            if seed is not None:
                torch.manual_seed(seed)
            try:
                yield
            finally:
                self.model.train(was_training)

    def _generate_batch(
        self,
        rows: Sequence[Sequence[int]],
        params: GenerationParams,
        *,
        streamer: BaseStreamer | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Generation]:
        max_tokens = params.max_tokens or self.max_tokens_default
        pad_id = self.tokenizer.pad_token_id
        config = gen.generation_config(params, max_tokens=max_tokens, eos=self._eos, pad_id=pad_id)
        new_ids = gen.run_generate(
            self.model, self.tokenizer, rows, config,
            stop=params.stop, streamer=streamer, cancel=cancel,
        )
        return [
            gen.finish_row(
                self.tokenizer, ids, eos=self._eos, stop=params.stop, max_tokens=max_tokens
            ).to_generation(len(row))
            for ids, row in zip(new_ids, rows, strict=True)
        ]

    def _score(self, pairs: Sequence[tuple[str, str]]) -> list[Score]:
        with self._torch_session(None):
            return score_pairs(self.model, self.tokenizer, pairs, batch_size=self.batch_size)

    def _stream_worker(
        self,
        row: list[int],
        params: GenerationParams,
        streamer: _QueueStreamer,
        cancel: threading.Event,
    ) -> Generation:
        try:
            with self._torch_session(params.seed):
                return self._generate_batch([row], params, streamer=streamer, cancel=cancel)[0]
        finally:
            streamer.end()  # also on errors, so the consumer never waits forever

    async def _stream(
        self, row: list[int], params: GenerationParams, *, strip: bool
    ) -> AsyncIterator[Chunk]:
        check_supported(params, self.capabilities, "transformers")
        queue: asyncio.Queue[list[int] | None] = asyncio.Queue()
        cancel = threading.Event()
        streamer = _QueueStreamer(asyncio.get_running_loop(), queue)
        task = asyncio.ensure_future(
            asyncio.to_thread(self._stream_worker, row, params, streamer, cancel)
        )
        text = gen.StreamText(self.tokenizer, self._eos, params.stop, strip=strip)
        try:
            while (ids := await queue.get()) is not None:
                if delta := text.feed(ids):
                    yield Chunk(delta)
            result = await task
            final = result.text.strip() if strip else result.text
            yield Chunk(text.rest(final), result.finish_reason, result.usage)
        finally:
            cancel.set()  # a consumer that stops early ends the generation at the next token
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
