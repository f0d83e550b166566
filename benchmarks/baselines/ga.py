"""Gradient ascent: maximise the NLL of the forget data.

Jang et al. 2022, *Knowledge Unlearning for Mitigating Privacy Risks in Language Models*
(arXiv:2210.01504). Loss = −mean over forget samples of the per-sample mean token NLL.
"""

from __future__ import annotations

from torch import Tensor, nn

from benchmarks.baselines.base import ForgetLossMethod
from benchmarks.baselines.data import Batch
from benchmarks.baselines.losses import sequence_nll


class GradAscent(ForgetLossMethod):
    """GA: descend on −NLL(forget); no retain term."""

    name = "ga"

    def forget_losses(self, model: nn.Module, forget: Batch) -> tuple[Tensor, Tensor]:
        nll, count = sequence_nll(model, forget)
        mean_nll = nll / count.clamp(min=1)
        return -mean_nll, mean_nll
