"""Token-level generation for the transformers backend: batching, stop strings, finish reasons.

Everything here is synchronous torch work; :mod:`proxy.backends.transformers_backend` runs it in
a worker thread behind a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from proxy.backends.base import DEFAULT_TEMPERATURE
from proxy.core.types import Generation, GenerationParams, Usage

Tokenizer = PreTrainedTokenizerBase


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids, with the tokenizer's BOS unless ``text`` already starts with it."""
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with every row padded on the left."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def eos_ids(model: PreTrainedModel, tokenizer: Tokenizer) -> list[int]:
    """Ids that end an answer: the model's and tokenizer's EOS, and ``<end_of_turn>`` if known."""
    configured = model.generation_config.eos_token_id
    found = list(configured) if isinstance(configured, list) else [configured]
    found.append(tokenizer.eos_token_id)
    turn_end = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(turn_end, int) and turn_end != tokenizer.unk_token_id:
        found.append(turn_end)
    return sorted({i for i in found if i is not None})


def generation_config(
    params: GenerationParams, *, max_tokens: int, eos: list[int], pad_id: int
) -> GenerationConfig:
    """A fresh config: greedy for temperature 0, else sampling with top-p (no top-k); an unset
    temperature is OpenAI's default, as on every backend.

    Sampling knobs are set explicitly so the model's own generation defaults do not leak in.
    """
    sampling: dict[str, Any] = {"do_sample": False}
    temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
    if temperature:
        sampling = {
            "do_sample": True,
            "temperature": temperature,
            "top_k": 0,
            "top_p": 1.0 if params.top_p is None else params.top_p,
        }
    return GenerationConfig(
        max_new_tokens=max_tokens, eos_token_id=eos, pad_token_id=pad_id, **sampling
    )


class StopCriteria(StoppingCriteria):
    """Per-row stop once a stop string appears in the generated text, or when cancelled."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        stop: Sequence[str],
        prompt_len: int,
        cancel: threading.Event | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._prompt_len = prompt_len
        self._cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        rows = input_ids.shape[0]
        if self._cancel is not None and self._cancel.is_set():
            return torch.ones(rows, dtype=torch.bool, device=input_ids.device)
        done = [False] * rows
        if self._stop:
            texts = self._tokenizer.batch_decode(
                input_ids[:, self._prompt_len :], skip_special_tokens=True
            )
            done = [any(s in text for s in self._stop) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def run_generate(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    rows: Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    stop: Sequence[str] = (),
    streamer: BaseStreamer | None = None,
    cancel: threading.Event | None = None,
) -> list[list[int]]:
    """Generate from left-padded ``rows``; returns each row's new ids (padding included)."""
    ids, mask = left_pad(rows, tokenizer.pad_token_id, model.device)
    criteria = StopCriteria(tokenizer, stop, ids.shape[1], cancel)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([criteria]),
        streamer=streamer,
    )
    return [row.tolist() for row in out[:, ids.shape[1] :]]


@dataclass(frozen=True)
class Finished:
    """A row's answer after the EOS cut-off and stop-string truncation."""

    text: str
    finish_reason: str
    completion_tokens: int

    def to_generation(self, prompt_tokens: int) -> Generation:
        usage = Usage(prompt_tokens, self.completion_tokens)
        return Generation(self.text, self.finish_reason, usage)


def finish_row(
    tokenizer: Tokenizer,
    new_ids: Sequence[int],
    *,
    eos: Sequence[int],
    stop: Sequence[str],
    max_tokens: int,
) -> Finished:
    """Cut at the first EOS, truncate at the first stop string, and name the finish reason.

    ``"stop"`` for an EOS or a stop string, ``"length"`` when ``max_tokens`` ran out.
    """
    ids = list(new_ids)
    eos_at = next((i for i, t in enumerate(ids) if t in eos), None)
    if eos_at is not None:
        ids = ids[: eos_at + 1]
    else:
        while ids and ids[-1] == tokenizer.pad_token_id:
            ids.pop()
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)
    if cut is not None:
        return Finished(text[:cut], "stop", len(ids))
    if eos_at is None and len(ids) >= max_tokens:
        return Finished(text, "length", len(ids))
    return Finished(text, "stop", len(ids))


class StreamText:
    """Turns growing token ids into text deltas that concatenate to the non-streaming text.

    A delta is released only when it cannot change: not while the text ends in an incomplete
    UTF-8 sequence, and never within ``max(len(stop)) - 1`` characters of the end, so a stop
    string completed by a later token is never half-sent. With ``strip`` the text is sent as
    ``text.strip()`` would end: leading whitespace dropped, trailing whitespace held back.
    """

    def __init__(
        self, tokenizer: Tokenizer, eos: Sequence[int], stop: Sequence[str], *, strip: bool
    ) -> None:
        self._tokenizer = tokenizer
        self._eos = set(eos)
        self._stop = tuple(stop)
        self._hold = max((len(s) for s in stop), default=1) - 1
        self._strip = strip
        self._ids: list[int] = []
        self._ended = False
        self.emitted = ""

    def feed(self, new_ids: Sequence[int]) -> str:
        """Add new token ids; return the text that is now safe to send."""
        for token in new_ids:
            self._ended = self._ended or token in self._eos
            if not self._ended:
                self._ids.append(token)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or any(s in text for s in self._stop):
            return ""
        safe = text[: max(0, len(text) - self._hold)]
        if self._strip:
            safe = safe.strip()
        if not safe.startswith(self.emitted):
            return ""
        delta, self.emitted = safe[len(self.emitted) :], safe
        return delta

    def rest(self, final_text: str) -> str:
        """The part of the final (non-streaming) text not yet sent."""
        return final_text[len(self.emitted) :]
