"""The base of every weight-based unlearning method (open-unlearning style).

A method turns a ``{"forget": Batch, "retain": Batch | None}`` batch into a loss; the shared loop in
``trainer.py`` does the rest. Most methods only define :meth:`ForgetLossMethod.forget_losses`, a
per-sample forget loss: the base averages it over the samples still below the optional forget-NLL
ceiling (Wang et al. 2024, *Unlearning with Control*) and adds ``retain_weight`` x retain NLL.

Under data parallelism a method sees one rank's shard of the batch, and its loss and every
metric are that shard's *share*: normalised by batch-wide totals from
:func:`~benchmarks.baselines.distributed.sum_over_ranks`, so the shares add up over the ranks
to the single-process values (in one process, share = value).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from benchmarks.baselines.config import TrainConfig
from benchmarks.baselines.data import Batch, Example, Item, Tokenizer, encode_items
from benchmarks.baselines.distributed import sum_over_ranks
from benchmarks.baselines.errors import BaselineConfigError
from benchmarks.baselines.losses import token_mean_nll


@dataclass
class LossOutput:
    """The loss to back-propagate and floats for the loss log."""

    loss: Tensor
    metrics: dict[str, float]


class UnlearningMethod(ABC):
    """One unlearning objective; subclasses override the loss (and rarely the data/setup hooks)."""

    name: ClassVar[str]
    config_cls: ClassVar[type[TrainConfig]] = TrainConfig

    def __init__(self, config: TrainConfig | None = None) -> None:
        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise BaselineConfigError(
                f"{self.name} needs a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @property
    def uses_retain(self) -> bool:
        """Whether batches need a ``retain`` part."""
        return False

    def encode_forget(self, tokenizer: Tokenizer, items: Sequence[Item]) -> list[Example]:
        """Tokenise the forget items (passages and/or QA pairs)."""
        return encode_items(tokenizer, items, max_length=self.config.max_length)

    def trainable_patterns(self, model: nn.Module) -> tuple[str, ...]:
        """Regexes of the parameters to train (empty = all); RMU narrows this to a few MLPs."""
        return self.config.trainable_patterns

    def prepare(self, model: nn.Module, forget: Sequence[Example], *, pad_id: int) -> None:  # noqa: B027
        """Called once with the original model, before the first update (e.g. reference NLL)."""

    @abstractmethod
    def compute_loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """The loss of one micro-batch ``{"forget": Batch, "retain": Batch | None}`` (a shard's
        share of it under data parallelism, metrics too)."""


class ForgetLossMethod(UnlearningMethod):
    """A method defined by a per-sample forget loss, bounded by the optional NLL ceiling."""

    @property
    def forget_weight(self) -> float:
        """Weight of the forget term (open-unlearning's ``gamma``)."""
        return 1.0

    @property
    def retain_weight(self) -> float:
        """Weight of the retain term (open-unlearning's ``alpha``); 0 = no retain forward pass."""
        return 0.0

    @property
    def uses_retain(self) -> bool:
        return self.retain_weight != 0

    @abstractmethod
    def forget_losses(self, model: nn.Module, forget: Batch) -> tuple[Tensor, Tensor]:
        """Per-sample forget loss and per-sample mean forget NLL (the latter for the ceiling)."""

    def compute_loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """``forget_weight`` x bounded mean forget loss + ``retain_weight`` x retain NLL."""
        per_sample, mean_nll = self.forget_losses(model, batch["forget"])
        forget_loss, active = self.bounded_mean(per_sample, mean_nll)
        loss = self.forget_weight * forget_loss
        metrics = {
            "forget_loss": forget_loss.item(),
            "forget_nll": (mean_nll.sum() / _rows(mean_nll)).item(),
            "active_fraction": active,
        }
        if self.retain_weight:
            retain_loss = token_mean_nll(model, batch["retain"])
            loss = loss + self.retain_weight * retain_loss
            metrics["retain_loss"] = retain_loss.item()
        return LossOutput(loss=loss, metrics=metrics)

    def bounded_mean(self, per_sample: Tensor, mean_nll: Tensor) -> tuple[Tensor, float]:
        """Mean of ``per_sample`` over samples whose NLL is within the ceiling; and their fraction.

        With no sample left the result is a zero that still depends on the graph, so the step
        back-propagates zero gradients instead of failing. Counts are batch-wide (all ranks).
        """
        ceiling = self.config.forget_nll_ceiling
        rows = float(_rows(per_sample))
        if ceiling is None:
            return per_sample.sum() / rows, len(per_sample) / rows
        active = mean_nll.detach() <= ceiling
        kept = per_sample.where(active, per_sample.new_zeros(()))
        count = int(sum_over_ranks(active.sum()))
        return kept.sum() / max(count, 1), int(active.sum()) / rows


def _rows(values: Tensor) -> Tensor:
    """The number of rows of the whole batch (all ranks) that ``values`` has a shard of."""
    return sum_over_ranks(values.new_tensor(len(values), dtype=torch.float32))
