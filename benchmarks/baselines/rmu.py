"""Representation misdirection for unlearning (RMU).

Li et al. 2024, *The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning*
(arXiv:2403.03218). On forget data the output of decoder layer ℓ is steered towards c·u, a fixed
random unit vector u scaled by ``steering_coeff``; on retain data it is kept at the frozen model's
activations (MSE, weight α). Only the MLP down-projections of layers ℓ−2…ℓ are updated, as in the
paper (defaults: its Zephyr-7B values c = 6.5, α = 1200; both depend on the model's activation
scale). The frozen activations come from the same model with the trained weights swapped back
to their originals, so no copy of the model is kept; layers after ℓ are never computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from benchmarks.baselines.base import LossOutput, UnlearningMethod
from benchmarks.baselines.config import GradDiffConfig
from benchmarks.baselines.data import IGNORE_INDEX, Batch, Example
from benchmarks.baselines.errors import BaselineConfigError, BaselineError
from benchmarks.baselines.losses import decoder_layer, layer_activations, masked_mse, text_config


@dataclass(frozen=True, kw_only=True)
class RMUConfig(GradDiffConfig):
    """``layer`` None = the middle layer; ``update_layers`` blocks ending at it are trained."""

    layer: int | None = None
    update_layers: int = 3
    param_pattern: str = r"mlp\.down_proj\.weight"
    steering_coeff: float = 6.5
    alpha: float = 1200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer is not None and self.layer < 0:
            raise BaselineConfigError(f"layer must be >= 0, got {self.layer}")
        if self.update_layers < 1 or self.steering_coeff <= 0:
            raise BaselineConfigError("update_layers must be >= 1 and steering_coeff > 0")
        if self.forget_nll_ceiling is not None:
            raise BaselineConfigError("rmu has no forget NLL to bound; unset forget_nll_ceiling")


def steering_vector(dim: int, coeff: float, seed: int) -> Tensor:
    """c·u with u a uniform-random unit vector drawn from ``seed`` (as in the WMDP code)."""
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    vector: Tensor = coeff * u / u.norm()
    return vector


class RMU(UnlearningMethod):
    """RMU: misdirect layer-ℓ activations on forget data, preserve them on retain data."""

    name = "rmu"
    config_cls = RMUConfig
    config: RMUConfig

    def __init__(self, config: RMUConfig | None = None) -> None:
        super().__init__(config)
        self.module: nn.Module | None = None
        self.control: Tensor | None = None
        self.original: dict[str, Tensor] = {}

    @property
    def uses_retain(self) -> bool:
        return self.config.alpha != 0

    def steered_layer(self, model: nn.Module) -> int:
        """Index of the steered decoder layer (the configured one, or the middle one)."""
        n_layers = text_config(model).num_hidden_layers
        layer = n_layers // 2 if self.config.layer is None else self.config.layer
        if layer >= n_layers:
            raise BaselineConfigError(f"layer {layer} out of range for {n_layers} layers")
        return layer

    def trainable_patterns(self, model: nn.Module) -> tuple[str, ...]:
        if self.config.trainable_patterns:
            return self.config.trainable_patterns
        last = self.steered_layer(model)
        layers = "|".join(
            str(i) for i in range(max(0, last - self.config.update_layers + 1), last + 1)
        )
        return (rf"(^|\.)layers\.({layers})\.{self.config.param_pattern}$",)

    def prepare(self, model: nn.Module, forget: Sequence[Example], *, pad_id: int) -> None:
        self.module = decoder_layer(model, self.steered_layer(model))
        self.original = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }
        self.control = steering_vector(
            text_config(model).hidden_size, self.config.steering_coeff, self.config.seed
        ).to(next(model.parameters()).device)

    def compute_loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        if self.module is None or self.control is None:
            raise BaselineError("RMU.prepare() must run before the first loss")
        retain, ref = batch["retain"], None
        if self.uses_retain:  # frozen pass first: swapping weights after a graph exists breaks it
            with torch.no_grad(), self._original_weights(model):
                ref = layer_activations(model, self.module, retain)
        forget = batch["forget"]
        activations = layer_activations(model, self.module, forget)
        forget_loss = masked_mse(activations, self.control, forget["labels"] != IGNORE_INDEX)
        loss = self.config.gamma * forget_loss
        metrics = {"forget_loss": forget_loss.item()}
        if ref is not None:
            current = layer_activations(model, self.module, retain)
            retain_loss = masked_mse(current, ref, retain["labels"] != IGNORE_INDEX)
            loss = loss + self.config.alpha * retain_loss
            metrics["retain_loss"] = retain_loss.item()
        return LossOutput(loss=loss, metrics=metrics)

    @contextmanager
    def _original_weights(self, model: nn.Module) -> Iterator[None]:
        params = dict(model.named_parameters())
        current = {name: params[name].detach().clone() for name in self.original}
        with torch.no_grad():
            for name, value in self.original.items():
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)
