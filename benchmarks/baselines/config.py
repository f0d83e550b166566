"""Training-loop settings shared by every weight-based method (open-unlearning defaults).

Each method extends :class:`TrainConfig` with its own hyper-parameters, so a YAML block is one flat
mapping: ``{type: npo, beta: 0.1, max_steps: 20}``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from benchmarks.baselines.errors import BaselineConfigError

C = TypeVar("C", bound="TrainConfig")

DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser, schedule, batching, freezing and control settings of one unlearning run.

    ``forget_nll_ceiling`` bounds the forget loss (Wang et al. 2024, *Unlearning with Control*): a
    forget sample whose mean per-token NLL is already above it is masked out of the forget term.
    Freezing: ``trainable_patterns`` (regexes searched in parameter names; empty = all),
    ``frozen_patterns`` (removed afterwards) and ``train_last_n_layers`` (keep only parameters of
    the last N decoder layers) combine by intersection. Weights are trained in fp32; ``dtype`` is
    the compute dtype (bf16 = autocast), None = bf16 on CUDA when supported, else fp32.
    """

    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    batch_size: int = 4
    grad_accum_steps: int = 1
    max_steps: int = 10
    seed: int = 0
    max_length: int = 256
    save_every: int | None = None
    forget_nll_ceiling: float | None = None
    trainable_patterns: tuple[str, ...] = ()
    frozen_patterns: tuple[str, ...] = ()
    train_last_n_layers: int | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum_steps", "max_steps", "max_length"):
            if getattr(self, name) < 1:
                raise BaselineConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BaselineConfigError(f"lr must be a positive finite number, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise BaselineConfigError("weight_decay and warmup_steps must be >= 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise BaselineConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.save_every is not None and self.save_every < 1:
            raise BaselineConfigError(f"save_every must be >= 1, got {self.save_every}")
        if self.train_last_n_layers is not None and self.train_last_n_layers < 1:
            raise BaselineConfigError("train_last_n_layers must be >= 1")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise BaselineConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for patterns in (self.trainable_patterns, self.frozen_patterns):
            if isinstance(patterns, str):
                raise BaselineConfigError("trainable_patterns/frozen_patterns must be sequences")
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise BaselineConfigError(f"bad parameter pattern {pattern!r}: {exc}") from None

    @classmethod
    def from_mapping(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build from a plain mapping (e.g. YAML); unknown keys raise, lists become tuples."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BaselineConfigError(
                f"unknown {cls.__name__} keys {unknown} (known: {sorted(known)})"
            )
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class GradDiffConfig(TrainConfig):
    """Loss = gamma * forget term + alpha * retain term (open-unlearning's GradDiff weights)."""

    gamma: float = 1.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0 or self.alpha < 0:
            raise BaselineConfigError("gamma and alpha must be >= 0")
