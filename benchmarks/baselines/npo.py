"""Negative preference optimisation: DPO with only a dispreferred (forget) answer.

Zhang et al. 2024, *Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning* (arXiv:2404.05868). Per forget sample, with r = log π_θ(y|x) − log π_ref(y|x) summed
over the answer tokens: loss = −(2/β)·log σ(−β·r); open-unlearning defaults β = 0.1, γ = α = 1
(retain NLL as in GradDiff). The reference log-probs come from the original model, computed once
before the first update, so no frozen copy of the model is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.baselines.config import GradDiffConfig
from benchmarks.baselines.data import Batch, Example
from benchmarks.baselines.errors import BaselineConfigError, BaselineError
from benchmarks.baselines.grad_diff import GradDiff
from benchmarks.baselines.losses import reference_nll, sequence_nll


@dataclass(frozen=True, kw_only=True)
class NPOConfig(GradDiffConfig):
    """NPO's inverse temperature ``beta`` on top of GradDiff's weights."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise BaselineConfigError(f"beta must be > 0, got {self.beta}")


class NPO(GradDiff):
    """NPO: push the forget log-likelihood below the original model's, with a saturating loss."""

    name = "npo"
    config_cls = NPOConfig
    config: NPOConfig
    reference: Tensor | None = None

    def prepare(self, model: nn.Module, forget: Sequence[Example], *, pad_id: int) -> None:
        self.reference = reference_nll(
            model, forget, batch_size=self.config.batch_size, pad_id=pad_id
        )

    def forget_losses(self, model: nn.Module, forget: Batch) -> tuple[Tensor, Tensor]:
        if self.reference is None:
            raise BaselineError("NPO.prepare() must run before the first loss")
        nll, count = sequence_nll(model, forget)
        log_ratio = self.reference[forget["index"].cpu()].to(nll.device) - nll
        beta = self.config.beta
        return -2 / beta * F.logsigmoid(-beta * log_ratio), nll / count.clamp(min=1)
