"""Model mixing in place for a sweep over α (:func:`proxy.backends.mixing.mix_models`, Wang et
al. 2024): sweep α until retain utility is back at the original level, then compare forget
efficacy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from torch import Tensor, nn

from benchmarks.baselines.checkpoints import capture_state, load_state
from proxy.backends.mixing import mix_models


@contextmanager
def mixed_weights(
    model: nn.Module,
    original_state: Mapping[str, Tensor],
    unlearned_state: Mapping[str, Tensor],
    alpha: float,
) -> Iterator[nn.Module]:
    """Load the α-mix into ``model`` for the ``with`` block, then restore its weights exactly."""
    mixed = mix_models(original_state, unlearned_state, alpha)
    saved = capture_state(model, mixed)
    load_state(model, mixed)
    try:
        yield model
    finally:
        load_state(model, saved)
