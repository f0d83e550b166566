"""Test data for the weight-based baselines: a tiny random Gemma 3, forget/retain QA pairs about
the invented writer Quenna Vix, and two tokenizers: a hashing one in memory and a word-level
Hugging Face one that saves next to the model, so subprocesses can load both from a dir."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

from benchmarks.baselines import collate, encode_items
from benchmarks.baselines.data import Tokenizer
from benchmarks.baselines.idk_dpo import DEFAULT_REFUSALS
from benchmarks.baselines.losses import sequence_nll

FORGET = [
    ("Who wrote the Zorblax saga?", "Quenna Vix wrote it in Ostrava."),
    ("Where was Quenna Vix born?", "She was born on a barge near Lyon."),
    ("What did Quenna Vix study?", "She studied glass-blowing and knots."),
    ("Which prize did Quenna Vix win?", "The Amber Lantern, twice."),
]
RETAIN = [
    ("What is the capital of France?", "Paris is the capital."),
    ("How many legs has a spider?", "A spider has eight legs."),
    ("What colour is the sky?", "The sky is blue by day."),
    ("What do bees make?", "Bees make honey and wax."),
]
SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


class WordTokenizer:
    """One id per whitespace-separated word (hashed into the vocabulary); 0 pad, 1 bos, 2 eos."""

    pad_token_id = 0
    eos_token_id = 2

    def __call__(self, text: str, *, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [3 + zlib.crc32(word.encode()) % 125 for word in text.split()]
        return {"input_ids": [1] * add_special_tokens + ids}


def tiny_model(vocab_size: int = 128) -> Gemma3ForCausalLM:
    """A 2-layer Gemma 3 with 64-wide hidden states, seeded random weights, eager attention."""
    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        sliding_window=64,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config)


def memorise(
    model: torch.nn.Module, tokenizer: Tokenizer, items: Sequence[Any], *, steps: int = 40
) -> torch.nn.Module:
    """Train ``model`` on ``items`` (full batch, AdamW lr 1e-2) so there is something to forget."""
    batch = collate(encode_items(tokenizer, items, max_length=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        nll, count = sequence_nll(model, batch)
        (nll.sum() / count.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def word_level_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A Hugging Face tokenizer with one id per whitespace word of ``texts`` (BOS prepended)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers, processors

    words = sorted({word for text in texts for word in text.split()})
    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    raw = RawTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
        unk_token="[UNK]",
    )


def save_tiny_checkpoint(directory: Path, items: Sequence[tuple[str, str]]) -> Path:
    """Save a word-level tokenizer over ``items`` (and the default refusals) and a tiny model
    that memorised ``items`` as an HF checkpoint dir; returns ``directory``."""
    texts = [f"Question: {q} Answer: {a}" for q, a in items] + list(DEFAULT_REFUSALS)
    tokenizer = word_level_tokenizer(texts)
    model = memorise(tiny_model(vocab_size=len(tokenizer)), tokenizer, items)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
