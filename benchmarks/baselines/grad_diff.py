"""Gradient difference: ascend on the forget NLL while descending on the retain NLL.

Liu et al. 2022, *Continual Learning and Private Unlearning* (CoLLAs 2022). Loss =
γ·(−NLL forget) + α·NLL retain, open-unlearning defaults γ = α = 1.
"""

from __future__ import annotations

from benchmarks.baselines.config import GradDiffConfig
from benchmarks.baselines.ga import GradAscent


class GradDiff(GradAscent):
    """GradDiff: GA's forget term weighted by ``gamma`` plus ``alpha`` x retain NLL."""

    name = "grad_diff"
    config_cls = GradDiffConfig
    config: GradDiffConfig

    @property
    def forget_weight(self) -> float:
        return self.config.gamma

    @property
    def retain_weight(self) -> float:
        return self.config.alpha
