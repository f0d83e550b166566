"""Every weight-based loss against its paper formula, on tiny models with hand-set weights.

The language model predicts the same next-token distribution everywhere, so a token's NLL is
−ln p(token) and every sequence NLL below is a small multiple of L = ln 2:

    current   p = (1/2, 1/4, 1/8, 1/8)  -> NLL per token (1, 2, 3, 3) · L
    reference p = (1/4, 1/4, 1/4, 1/4)  -> NLL per token 2 · L

Forget QA pairs (prompt = first token, loss on the rest; the alternate is IdkDPO's refusal):

    F0 targets (1, 2):    NLL 2+3 = 5L, 2 tokens, reference 4L;  refusal A0 (0,):   1L, ref 2L
    F1 targets (0, 0, 0): NLL 3L,       3 tokens, reference 6L;  refusal A1 (2, 0): 4L, ref 4L

Retain passages R0 targets (0, 0) and R1 (1,): token-mean NLL (2L + 2L) / 3 = 4L/3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from benchmarks.baselines import IGNORE_INDEX, METHODS, collate
from benchmarks.baselines.data import Batch, Example
from benchmarks.baselines.losses import sequence_nll, token_mean_nll
from benchmarks.baselines.rmu import RMU, RMUConfig, steering_vector

pytestmark = pytest.mark.usefixtures("torch_one_thread")

L = math.log(2)
CURRENT = (1 / 2, 1 / 4, 1 / 8, 1 / 8)
UNIFORM = (1 / 4,) * 4


def _example(ids: Sequence[int], prompt: int) -> Example:
    labels = [IGNORE_INDEX] * prompt + list(ids[prompt:])
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def _forget() -> list[Example]:
    f0, f1 = _example([0, 1, 2], 1), _example([1, 0, 0, 0], 1)
    f0["alternate"], f1["alternate"] = _example([2, 0], 1), _example([3, 2, 0], 1)
    return [f0, f1]


RETAIN = [_example([2, 0, 0], 0), _example([3, 1], 0)]


def _batch() -> Batch:
    """F1 then F0: the reference log-probs must be looked up by ``index``, not position."""
    forget = _forget()
    batch = collate([forget[1], forget[0]])
    batch["index"] = torch.tensor([1, 0])
    return {"forget": batch, "retain": collate(RETAIN)}


class _UnigramLM(nn.Module):
    """Logits ln p for every position, whatever the context."""

    def __init__(self, probs: Sequence[float]) -> None:
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(probs).log())

    def forward(self, *, input_ids: Tensor, attention_mask: Tensor, use_cache: bool) -> Any:
        return SimpleNamespace(logits=self.log_probs.expand(*input_ids.shape, -1))


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# F1 then F0, as in _batch(). Units of L.
NLL, LENGTH, REF = (3, 5), (3, 2), (6, 4)
ALT_NLL, ALT_REF = (4, 1), (4, 2)
RETAIN_NLL = 4 / 3


def _ga() -> float:
    # −mean of per-sample mean NLL: −(3/3 + 5/2) / 2 = −1.75 L
    return -sum(n / k for n, k in zip(NLL, LENGTH)) / 2 * L


def _npo(beta: float) -> float:
    # r = log π_θ − log π_ref = ref NLL − NLL: F1 +3L, F0 −1L; loss −(2/β)·log σ(−β·r)
    return sum(-2 / beta * _log_sigmoid(-beta * (r - n) * L) for r, n in zip(REF, NLL)) / 2


def _simnpo(beta: float, delta: float) -> float:
    # ℓ̄ = NLL / |y|: F1 1L, F0 2.5L; loss −(2/β)·log σ(β·ℓ̄ − δ)
    return sum(-2 / beta * _log_sigmoid(beta * n / k * L - delta)
               for n, k in zip(NLL, LENGTH)) / 2


def _idk_dpo(beta: float) -> float:
    # win = r(refusal): F1 0, F0 +1L; lose = r(true): F1 +3L, F0 −1L; win − lose: −3L, +2L
    margins = [(ar - an) - (r - n) for ar, an, r, n in zip(ALT_REF, ALT_NLL, REF, NLL)]
    return sum(-2 / beta * _log_sigmoid(beta * m * L) for m in margins) / 2


CUSTOM = {"gamma": 0.5, "alpha": 2.0}
# (method, config, forget term, its weight γ, retain weight α); defaults from open-unlearning
CASES = [
    pytest.param("ga", {}, _ga(), 1.0, 0.0, id="ga"),
    pytest.param("grad_diff", {}, _ga(), 1.0, 1.0, id="grad_diff"),
    pytest.param("grad_diff", CUSTOM, _ga(), 0.5, 2.0, id="grad_diff-custom"),
    pytest.param("npo", {}, _npo(0.1), 1.0, 1.0, id="npo"),
    pytest.param("npo", {"beta": 0.5, **CUSTOM}, _npo(0.5), 0.5, 2.0, id="npo-custom"),
    pytest.param("simnpo", {}, _simnpo(4.5, 0.0), 0.125, 1.0, id="simnpo"),
    pytest.param("simnpo", {"beta": 2.0, "delta": 0.5, **CUSTOM}, _simnpo(2.0, 0.5), 0.5, 2.0,
                 id="simnpo-custom"),
    pytest.param("idk_dpo", {}, _idk_dpo(0.1), 1.0, 1.0, id="idk_dpo"),
    pytest.param("idk_dpo", {"beta": 0.5, **CUSTOM}, _idk_dpo(0.5), 0.5, 2.0,
                 id="idk_dpo-custom"),
]


def test_sequence_nll_sums_labelled_next_tokens() -> None:
    nll, count = sequence_nll(_UnigramLM(CURRENT), _batch()["forget"])
    assert nll.tolist() == pytest.approx([n * L for n in NLL], rel=1e-6)
    assert count.tolist() == list(LENGTH)
    assert token_mean_nll(_UnigramLM(CURRENT), collate(RETAIN)).item() == pytest.approx(
        RETAIN_NLL * L, rel=1e-6)


@pytest.mark.parametrize(("method", "config", "forget", "gamma", "alpha"), CASES)
def test_loss_matches_the_formula(method: str, config: dict[str, float], forget: float,
                                  gamma: float, alpha: float) -> None:
    cls = METHODS.get(method)
    unlearner = cls(cls.config_cls.from_mapping(config))
    unlearner.prepare(_UnigramLM(UNIFORM), _forget(), pad_id=0)
    out = unlearner.compute_loss(_UnigramLM(CURRENT), _batch())
    assert out.loss.item() == pytest.approx(gamma * forget + alpha * RETAIN_NLL * L, rel=1e-5)
    assert out.metrics["forget_loss"] == pytest.approx(forget, rel=1e-5)
    assert out.metrics.get("retain_loss") == (
        pytest.approx(RETAIN_NLL * L, rel=1e-6) if alpha else None)


# RMU ----------------------------------------------------------------------------------------
# Embeddings: token 0 (1, 0), 1 (0, 1), 2 (1, 1), 3 (0, 0); each block is its MLP's
# down-projection, identity at prepare(); then layer 1 (the middle of 2) is set to 2·I.
# Steered activations are 2·e. Against c = (2, 2), the per-token MSE (mean over 2 dims) is
# token 0: (0 + 4)/2 = 2, token 1: 2, token 2: 0. Loss tokens are the labelled positions:
# F1 (0, 0, 0) -> 2, F0 (1, 2) -> (2 + 0)/2 = 1; forget term (2 + 1)/2 = 1.5.
# Retain vs the frozen activations e: per-token MSE = mean(e²): token 2: 1, 0: 1/2, 3: 0, 1: 1/2;
# R0 (2, 0, 0) -> 2/3, R1 (3, 1) -> 1/4; retain term (2/3 + 1/4)/2 = 11/24.
RMU_FORGET, RMU_RETAIN = 1.5, 11 / 24


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.down_proj = nn.Linear(2, 2, bias=False)
        nn.init.eye_(self.mlp.down_proj.weight)

    def forward(self, hidden: Tensor) -> Tensor:
        out: Tensor = self.mlp.down_proj(hidden)
        return out


class _TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=2, hidden_size=2)
        self.embed = nn.Embedding(4, 2)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
        self.layers = nn.ModuleList([_Block(), _Block()])

    def forward(self, *, input_ids: Tensor, attention_mask: Tensor, use_cache: bool) -> Any:
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return SimpleNamespace(logits=hidden)


@pytest.mark.parametrize(("config", "gamma", "alpha"), [
    ({}, 1.0, 1200.0),  # the paper's Zephyr-7B α; γ = 1
    ({"gamma": 0.5, "alpha": 4.0}, 0.5, 4.0),
])
def test_rmu_loss_matches_the_formula(config: dict[str, float], gamma: float,
                                      alpha: float) -> None:
    model = _TinyDecoder()
    rmu = RMU(RMUConfig.from_mapping(config))
    rmu.prepare(model, _forget(), pad_id=0)
    assert rmu.control is not None
    assert torch.linalg.vector_norm(rmu.control).item() == pytest.approx(6.5, rel=1e-6)
    rmu.control = torch.tensor([2.0, 2.0])
    trained = model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        trained.mul_(2.0)
    out = rmu.compute_loss(model, _batch())
    assert out.metrics == pytest.approx({"forget_loss": RMU_FORGET, "retain_loss": RMU_RETAIN})
    assert out.loss.item() == pytest.approx(gamma * RMU_FORGET + alpha * RMU_RETAIN, rel=1e-6)
    assert torch.equal(trained, 2 * torch.eye(2))  # the frozen pass put the trained weights back


@pytest.mark.parametrize(("dim", "coeff", "seed"), [(2, 6.5, 0), (5, 20.0, 3)])
def test_steering_vector_is_a_scaled_seeded_uniform_direction(dim: int, coeff: float,
                                                              seed: int) -> None:
    vector = steering_vector(dim, coeff, seed)
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    assert torch.linalg.vector_norm(vector).item() == pytest.approx(coeff, rel=1e-6)
    assert torch.allclose(vector / coeff, u / torch.linalg.vector_norm(u))
