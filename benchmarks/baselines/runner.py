"""The high-level entry: method name + model + tokenizer + raw forget/retain items -> result."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from benchmarks.baselines.config import TrainConfig
from benchmarks.baselines.data import Item, Tokenizer, encode_items
from benchmarks.baselines.registry import METHODS
from benchmarks.baselines.trainer import UnlearnResult, train


def unlearn(
    model: nn.Module,
    tokenizer: Tokenizer,
    method: str,
    forget: Sequence[Item],
    retain: Sequence[Item],
    *,
    config: TrainConfig | Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` in place with the registered ``method``.

    Items are passages (loss on every token) or ``(question, answer)`` pairs (loss on the answer).
    ``config`` is the method's config class, a flat mapping of its fields, or None for the
    defaults. With ``output_dir`` the loss log (``loss_log.jsonl``) and checkpoints go there.
    Raises :class:`~proxy.core.registry.RegistryError` for an unknown method,
    :class:`BaselineConfigError` / :class:`BaselineDataError` for bad settings or data.
    """
    cls = METHODS.get(method)
    impl = cls(cls.config_cls.from_mapping(config) if isinstance(config, Mapping) else config)
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    return train(
        model,
        impl,
        impl.encode_forget(tokenizer, forget),
        encode_items(tokenizer, retain, max_length=impl.config.max_length)
        if impl.uses_retain
        else [],
        device=device,
        output_dir=output_dir,
        progress=progress,
        pad_id=pad_id,
    )
