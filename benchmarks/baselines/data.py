"""Tokenised forget/retain examples and ``{"forget", "retain"}`` batches.

Two item kinds: a ``(question, answer)`` pair rendered chat-template-free as
``"Question: {q}\\nAnswer: {a}"`` with the loss on the answer tokens only (TOFU-style), and a raw
text passage with the loss on every token (RWKU's Wikipedia-style forget corpus).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import torch

from benchmarks.baselines.errors import BaselineDataError

IGNORE_INDEX = -100
QA_PROMPT = "Question: {question}\nAnswer:"

Item: TypeAlias = "str | tuple[str, str]"
Example: TypeAlias = dict[str, Any]
"""``input_ids`` and ``labels`` (1-D int64), optionally ``alternate``: another Example."""
Batch: TypeAlias = dict[str, Any]
"""``input_ids``, ``attention_mask``, ``labels`` (2-D), ``index`` (1-D), maybe ``alternate``."""


class Tokenizer(Protocol):
    """The slice of a Hugging Face tokenizer used here."""

    pad_token_id: int | None
    eos_token_id: int | None

    def __call__(self, text: str, *, add_special_tokens: bool = ...) -> Mapping[str, Any]: ...


def _ids(tokenizer: Tokenizer, text: str, *, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_qa(tokenizer: Tokenizer, question: str, answer: str, *, max_length: int) -> Example:
    """Tokenise one QA pair; labels are -100 on the prompt. Raises if no answer token fits."""
    prompt = _ids(tokenizer, QA_PROMPT.format(question=question), special=True)
    reply = _ids(tokenizer, " " + answer, special=False)
    if tokenizer.eos_token_id is not None:
        reply.append(tokenizer.eos_token_id)
    if len(prompt) >= max_length or not reply:
        raise BaselineDataError(
            f"question of {len(prompt)} tokens leaves no answer token within max_length="
            f"{max_length}: {question[:60]!r}"
        )
    ids = (prompt + reply)[:max_length]
    labels = [IGNORE_INDEX] * len(prompt) + ids[len(prompt) :]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def encode_passage(tokenizer: Tokenizer, text: str, *, max_length: int) -> Example:
    """Tokenise one passage, truncated to ``max_length``, with the loss on every token."""
    ids = _ids(tokenizer, text, special=True)[:max_length]
    if len(ids) < 2:
        raise BaselineDataError(f"passage too short to carry a loss: {text[:60]!r}")
    tensor = torch.tensor(ids)
    return {"input_ids": tensor, "labels": tensor.clone()}


def encode_items(tokenizer: Tokenizer, items: Sequence[Item], *, max_length: int) -> list[Example]:
    """Encode a mix of passages (``str``) and ``(question, answer)`` pairs."""
    return [
        encode_passage(tokenizer, item, max_length=max_length)
        if isinstance(item, str)
        else encode_qa(tokenizer, *qa_pair(item), max_length=max_length)
        for item in items
    ]


def qa_pair(item: object) -> tuple[str, str]:
    """Return ``item`` as a ``(question, answer)`` pair or raise :class:`BaselineDataError`."""
    if (
        isinstance(item, Sequence)
        and not isinstance(item, str)
        and len(item) == 2
        and all(isinstance(part, str) for part in item)
    ):
        return item[0], item[1]
    raise BaselineDataError(f"expected a (question, answer) pair of strings, got {item!r}")


def collate(examples: Sequence[Example], *, pad_id: int = 0) -> Batch:
    """Right-pad examples into a batch (labels -100 and attention 0 on padding)."""
    if not examples:
        raise BaselineDataError("cannot collate an empty list of examples")
    length = max(len(e["input_ids"]) for e in examples)
    shape = (len(examples), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = example["input_ids"]
        labels[row, :n] = example["labels"]
        attention_mask[row, :n] = 1
    batch: Batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if "alternate" in examples[0]:
        batch["alternate"] = collate([e["alternate"] for e in examples], pad_id=pad_id)
    return batch


def iterate_batches(
    examples: Sequence[Example], *, batch_size: int, generator: torch.Generator, pad_id: int = 0
) -> Iterator[Batch]:
    """Endless shuffled batches (reshuffled every epoch); ``index`` holds the example positions."""
    if not examples:
        raise BaselineDataError("no examples to iterate over")
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = collate([examples[i] for i in chosen], pad_id=pad_id)
            batch["index"] = torch.tensor(chosen)
            yield batch


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor of a (nested) batch to ``device``."""
    return {
        k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()
    }
