"""Model mixing: θ(α) = (1 − α)·θ_orig + α·θ_unlearned, the weight-side calibration control of
Wang et al. 2024 (*Towards Effective Evaluations and Comparisons for LLM Unlearning Methods*).

The transformers backend serves a mixed model (``weights`` + ``mix_alpha``); the baselines
sweep α until retain utility is back at the original level. α = 0 and α = 1 return exact
copies of the endpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor


class MixingError(ValueError):
    """An α outside [0, 1], or two states that cannot be mixed."""


def mix_models(
    original_state: Mapping[str, Tensor], unlearned_state: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """Interpolate every floating tensor; others must be equal and are copied.

    Computed in fp32 (fp64 for fp64 tensors) and cast back. Raises on α outside [0, 1] or on
    states whose keys or shapes differ.
    """
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise MixingError(f"alpha must be in [0, 1], got {alpha}")
    if set(original_state) != set(unlearned_state):
        diff = sorted(set(original_state) ^ set(unlearned_state))
        raise MixingError(f"states differ in keys: {diff[:5]}")
    mixed = {}
    for name, orig in original_state.items():
        new = unlearned_state[name].to(orig.device)
        if orig.shape != new.shape:
            raise MixingError(f"{name}: shapes {tuple(orig.shape)} != {tuple(new.shape)}")
        if not orig.is_floating_point():
            if not torch.equal(orig, new):
                raise MixingError(f"{name}: non-floating tensors differ; cannot mix")
            mixed[name] = orig.clone()
        elif alpha == 0.0:
            mixed[name] = orig.clone()
        elif alpha == 1.0:
            mixed[name] = new.to(orig.dtype, copy=True)
        else:
            work = torch.float64 if orig.dtype == torch.float64 else torch.float32
            mixed[name] = torch.lerp(orig.to(work), new.to(work), alpha).to(orig.dtype)
    return mixed
