"""SimNPO: reference-free, length-normalised NPO.

Fan et al. 2024, *Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning* (arXiv:2410.07163). Per forget sample with mean token NLL ℓ̄:
loss = −(2/β)·log σ(β·ℓ̄ − δ). Defaults as open-unlearning's SimNPO: β = 4.5, forget weight
γ = 0.125, retain weight α = 1, margin δ = 0 (δ is the paper's γ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.baselines.config import GradDiffConfig
from benchmarks.baselines.data import Batch
from benchmarks.baselines.errors import BaselineConfigError
from benchmarks.baselines.grad_diff import GradDiff
from benchmarks.baselines.losses import sequence_nll


@dataclass(frozen=True, kw_only=True)
class SimNPOConfig(GradDiffConfig):
    """SimNPO's ``beta`` and reward margin ``delta``; forget weight ``gamma`` defaults to 0.125."""

    beta: float = 4.5
    delta: float = 0.0
    gamma: float = 0.125

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise BaselineConfigError(f"beta must be > 0, got {self.beta}")


class SimNPO(GradDiff):
    """SimNPO: NPO without a reference model, on the length-normalised log-likelihood."""

    name = "simnpo"
    config_cls = SimNPOConfig
    config: SimNPOConfig

    def forget_losses(self, model: nn.Module, forget: Batch) -> tuple[Tensor, Tensor]:
        nll, count = sequence_nll(model, forget)
        mean_nll = nll / count.clamp(min=1)
        beta = self.config.beta
        return -2 / beta * F.logsigmoid(beta * mean_nll - self.config.delta), mean_nll
