"""Forward-pass helpers shared by the methods: sequence NLL, reference NLL, layer activations.

The batch means (:func:`token_mean_nll`, :func:`masked_mse`) divide by totals summed over the
data-parallel ranks, so on a rank's shard they give its share of the global batch's mean (see
``distributed.py``); in one process, the plain mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.baselines.data import IGNORE_INDEX, Batch, Example, collate, to_device
from benchmarks.baselines.distributed import sum_over_ranks
from benchmarks.baselines.errors import BaselineError


def sequence_nll(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """Summed next-token NLL over each row's labelled tokens, and the number of such tokens.

    Logits are upcast to fp32 so bf16 training keeps an accurate loss.
    """
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    labels = batch["labels"][:, 1:]
    token_nll = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return token_nll.sum(dim=-1), (labels != IGNORE_INDEX).sum(dim=-1)


def token_mean_nll(model: nn.Module, batch: Batch) -> Tensor:
    """NLL averaged over all labelled tokens of the batch (what ``model(**batch).loss`` gives)."""
    nll, count = sequence_nll(model, batch)
    return nll.sum() / sum_over_ranks(count.sum()).clamp(min=1)


@torch.no_grad()
def reference_nll(
    model: nn.Module, examples: Sequence[Example], *, batch_size: int, pad_id: int
) -> Tensor:
    """Summed NLL of every example under ``model`` as it is now (eval mode, no grad), on CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            sequence_nll(
                model, to_device(collate(examples[i : i + batch_size], pad_id=pad_id), device)
            )[0]
            for i in range(0, len(examples), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks).cpu()


class _StopForward(Exception):
    """Raised by the activation hook so layers after the hooked one are never computed."""


def layer_activations(model: nn.Module, module: nn.Module, batch: Batch) -> Tensor:
    """Hidden states output by ``module`` (a decoder layer); later layers are not computed."""
    cache: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        cache.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not cache:
        raise BaselineError("the hooked module was not called during the forward pass")
    return cache[0]


def masked_mse(activations: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over hidden dims of the squared error, averaged over masked tokens, then over rows."""
    per_token = (activations.float() - target.float()).pow(2).mean(dim=-1)
    per_row = (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return per_row.sum() / sum_over_ranks(per_row.new_tensor(len(per_row)))


def text_config(model: nn.Module) -> Any:
    """The (text) config of a Hugging Face model: ``num_hidden_layers``, ``hidden_size``…"""
    config = getattr(model, "config", None)
    if config is None:
        raise BaselineError(f"{type(model).__name__} has no Hugging Face config")
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def decoder_layer(model: nn.Module, index: int) -> nn.Module:
    """The single module named ``…layers.<index>`` (a transformer block)."""
    suffix = f"layers.{index}"
    found: list[nn.Module] = [
        m for name, m in model.named_modules() if name == suffix or name.endswith("." + suffix)
    ]
    if len(found) != 1:
        raise BaselineError(f"expected one module named '*{suffix}', found {len(found)}")
    return found[0]
