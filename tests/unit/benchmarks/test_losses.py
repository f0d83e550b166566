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

from benchmarks.baselines import IGNORE_INDEX, METHODS, BaselineConfigError, BaselineError, collate
from benchmarks.baselines.data import Batch, Example
from benchmarks.baselines.losses import (
    decoder_layer,
    layer_activations,
    masked_mse,
    sequence_nll,
    text_config,
    token_mean_nll,
)
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
    """Logits ln p for every position, whatever the context; ``calls`` records the
    ``attention_mask`` and ``use_cache`` of every forward call."""

    def __init__(self, probs: Sequence[float]) -> None:
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(probs).log())
        self.calls: list[tuple[Tensor, bool]] = []

    def forward(self, *, input_ids: Tensor, attention_mask: Tensor, use_cache: bool) -> Any:
        self.calls.append((attention_mask, use_cache))
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
    model, batch = _UnigramLM(CURRENT), _batch()["forget"]
    nll, count = sequence_nll(model, batch)
    assert nll.tolist() == pytest.approx([n * L for n in NLL], rel=1e-6)
    assert count.tolist() == list(LENGTH)
    ((mask, use_cache),) = model.calls  # padding masked, no KV cache
    assert mask is batch["attention_mask"] and use_cache is False
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


def test_token_mean_nll_of_one_and_of_no_labelled_token() -> None:
    one = collate([_example([0, 1], 0)])  # one next-token target, token 1: 2L
    assert token_mean_nll(_UnigramLM(CURRENT), one).item() == pytest.approx(2 * L, rel=1e-6)
    none = collate([_example([0, 1], 2)])
    assert token_mean_nll(_UnigramLM(CURRENT), none).item() == 0.0  # not NaN


# Per-sample forget losses (F1 then F0) of each method at its default hyper-parameters.
PER_SAMPLE = {
    "ga": [-n / k * L for n, k in zip(NLL, LENGTH)],
    "npo": [-2 / 0.1 * _log_sigmoid(-0.1 * (r - n) * L) for r, n in zip(REF, NLL)],
    "simnpo": [-2 / 4.5 * _log_sigmoid(4.5 * n / k * L) for n, k in zip(NLL, LENGTH)],
    "idk_dpo": [-2 / 0.1 * _log_sigmoid(0.1 * ((ar - an) - (r - n)) * L)
                for ar, an, r, n in zip(ALT_REF, ALT_NLL, REF, NLL)],
}
PER_SAMPLE["grad_diff"] = PER_SAMPLE["ga"]


def _prepared(method: str, forget: list[Example]) -> Any:
    cls = METHODS.get(method)
    unlearner = cls()
    unlearner.prepare(_UnigramLM(UNIFORM), forget, pad_id=0)
    return unlearner


@pytest.mark.parametrize("method", sorted(PER_SAMPLE))
def test_forget_losses_are_per_sample_in_batch_order(method: str) -> None:
    per_sample, mean_nll = _prepared(method, _forget()).forget_losses(
        _UnigramLM(CURRENT), _batch()["forget"])
    assert per_sample.shape == mean_nll.shape == (2,)
    assert per_sample.tolist() == pytest.approx(PER_SAMPLE[method], rel=1e-5)
    assert mean_nll.tolist() == pytest.approx([n / k * L for n, k in zip(NLL, LENGTH)], rel=1e-6)


# F2: prompt token 0, one answer token 1: NLL 2L, reference 2L; its refusal (0,): 1L, ref 2L.
ONE_TOKEN = {
    "ga": -2 * L,
    "npo": -2 / 0.1 * _log_sigmoid(0.0),  # r = 2L - 2L = 0
    "simnpo": -2 / 4.5 * _log_sigmoid(4.5 * 2 * L),  # mean NLL = 2L / 1 token
    "idk_dpo": -2 / 0.1 * _log_sigmoid(0.1 * L),  # (2L - 1L) - (2L - 2L) = L
}


@pytest.mark.parametrize("method", sorted(ONE_TOKEN))
def test_a_one_token_answer_is_its_own_mean(method: str) -> None:
    f2 = _example([0, 1], 1)
    f2["alternate"] = _example([0, 0], 1)
    batch = collate([f2])
    batch["index"] = torch.tensor([2])
    per_sample, mean_nll = _prepared(method, [*_forget(), f2]).forget_losses(
        _UnigramLM(CURRENT), batch)
    assert per_sample.tolist() == pytest.approx([ONE_TOKEN[method]], rel=1e-5)
    assert mean_nll.tolist() == pytest.approx([2 * L], rel=1e-6)


def _to_meta(batch: Batch) -> Batch:
    """Every tensor on the meta device but ``index``, which the methods read on CPU."""
    return {k: _to_meta(v) if isinstance(v, dict) else v if k == "index" else v.to("meta")
            for k, v in batch.items()}  # type: ignore[misc]


@pytest.mark.parametrize("method", ["npo", "idk_dpo"])
def test_reference_log_probs_follow_the_model_to_its_device(method: str) -> None:
    model = _UnigramLM(CURRENT).to("meta")
    per_sample, _ = _prepared(method, _forget()).forget_losses(model, _to_meta(_batch()["forget"]))
    assert per_sample.device.type == "meta"


@pytest.mark.parametrize("unset", ["reference", "alternate_reference"])
def test_idk_dpo_loss_needs_both_references(unset: str) -> None:
    unlearner = _prepared("idk_dpo", _forget())
    setattr(unlearner, unset, None)
    with pytest.raises(BaselineError, match=r"prepare\(\)"):
        unlearner.forget_losses(_UnigramLM(CURRENT), _batch()["forget"])


def test_npo_loss_before_prepare_raises() -> None:
    with pytest.raises(BaselineError, match=r"prepare\(\)"):
        METHODS.get("npo")().forget_losses(_UnigramLM(CURRENT), _batch()["forget"])


@pytest.mark.parametrize("method", ["npo", "simnpo", "idk_dpo"])
@pytest.mark.parametrize("beta", [0.0, -0.5])
def test_beta_must_be_positive(method: str, beta: float) -> None:
    with pytest.raises(BaselineConfigError, match="beta"):
        METHODS.get(method).config_cls.from_mapping({"beta": beta})


@pytest.mark.parametrize("method", ["npo", "simnpo", "idk_dpo"])
def test_a_small_positive_beta_is_accepted(method: str) -> None:
    assert METHODS.get(method).config_cls.from_mapping({"beta": 0.5}).beta == 0.5


@pytest.mark.parametrize("refusals", ["I don't know.", []])
def test_idk_dpo_refusals_must_be_a_non_empty_sequence(refusals: Any) -> None:
    with pytest.raises(BaselineConfigError, match="refusals"):
        METHODS.get("idk_dpo").config_cls.from_mapping({"refusals": refusals})


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
    """With ``as_tuple`` it returns ``(hidden, zeros)`` as older Hugging Face decoder layers do."""

    def __init__(self, *, as_tuple: bool = False) -> None:
        super().__init__()
        self.as_tuple = as_tuple
        self.mlp = nn.Module()
        self.mlp.down_proj = nn.Linear(2, 2, bias=False)
        nn.init.eye_(self.mlp.down_proj.weight)

    def forward(self, hidden: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out: Tensor = self.mlp.down_proj(hidden)
        return (out, torch.zeros_like(out)) if self.as_tuple else out


class _TinyDecoder(nn.Module):
    """Records the ``attention_mask`` and ``use_cache`` of every forward call in ``calls``."""

    def __init__(self, *, as_tuple: bool = False) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=2, hidden_size=2)
        self.embed = nn.Embedding(4, 2)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
        self.layers = nn.ModuleList([_Block(as_tuple=as_tuple), _Block(as_tuple=as_tuple)])
        self.calls: list[tuple[Tensor, bool]] = []

    def forward(self, *, input_ids: Tensor, attention_mask: Tensor, use_cache: bool) -> Any:
        self.calls.append((attention_mask, use_cache))
        hidden = self.embed(input_ids)
        for layer in self.layers:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
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


def _configured(n_layers: int) -> nn.Module:
    """A module carrying only a config, enough for RMU's layer choice."""
    model = nn.Module()
    model.config = SimpleNamespace(num_hidden_layers=n_layers, hidden_size=2)
    return model


@pytest.mark.parametrize(("n_layers", "layer", "expected"), [
    (2, None, 1),  # the middle layer: n // 2
    (5, None, 2),
    (8, None, 4),
    (2, 0, 0),  # a configured layer is used as is
    (2, 1, 1),  # the last layer is in range
])
def test_rmu_steered_layer(n_layers: int, layer: int | None, expected: int) -> None:
    assert RMU(RMUConfig(layer=layer)).steered_layer(_configured(n_layers)) == expected


def test_rmu_layer_past_the_last_raises() -> None:
    with pytest.raises(BaselineConfigError, match="layer"):
        RMU(RMUConfig(layer=2)).steered_layer(_configured(2))


@pytest.mark.parametrize(("n_layers", "config", "layers"), [
    (8, {}, "2|3|4"),  # defaults: middle layer 4 and the 2 blocks before it
    (6, {"layer": 4, "update_layers": 2}, "3|4"),
    (6, {"layer": 4, "update_layers": 1}, "4"),
    (2, {}, "0|1"),  # layers 1-2..1 clipped at layer 0
])
def test_rmu_trains_the_update_layers_ending_at_the_steered_one(
        n_layers: int, config: dict[str, int], layers: str) -> None:
    patterns = RMU(RMUConfig(**config)).trainable_patterns(_configured(n_layers))
    assert patterns == (rf"(^|\.)layers\.({layers})\.mlp\.down_proj\.weight$",)


def test_rmu_explicit_trainable_patterns_win() -> None:
    rmu = RMU(RMUConfig(trainable_patterns=("q_proj",), param_pattern="ignored"))
    assert rmu.trainable_patterns(_configured(8)) == ("q_proj",)


def test_rmu_config_defaults() -> None:
    config = RMUConfig()
    assert (config.layer, config.update_layers, config.param_pattern) == (
        None, 3, r"mlp\.down_proj\.weight")
    assert (config.steering_coeff, config.alpha, config.gamma) == (6.5, 1200.0, 1.0)


@pytest.mark.parametrize(("values", "field"), [
    ({"layer": -1}, "layer"),
    ({"update_layers": 0}, "update_layers"),
    ({"steering_coeff": 0.0}, "steering_coeff"),
    ({"steering_coeff": -1.0}, "steering_coeff"),
    ({"forget_nll_ceiling": 1.0}, "forget_nll_ceiling"),
])
def test_rmu_bad_config_raises_naming_the_field(values: dict[str, float], field: str) -> None:
    with pytest.raises(BaselineConfigError, match=field):
        RMUConfig.from_mapping(values)


@pytest.mark.parametrize("values", [
    {"layer": 0}, {"update_layers": 1}, {"steering_coeff": 0.5}, {"alpha": 0.0},
])
def test_rmu_config_edges_are_accepted(values: dict[str, float]) -> None:
    config = RMUConfig.from_mapping(values)
    assert all(getattr(config, k) == v for k, v in values.items())


def test_rmu_loss_before_prepare_raises() -> None:
    rmu = RMU()
    assert (rmu.module, rmu.control, rmu.original) == (None, None, {})
    with pytest.raises(BaselineError, match=r"prepare\(\)"):
        rmu.compute_loss(_TinyDecoder(), _batch())


@pytest.mark.parametrize("unset", ["module", "control"])
def test_rmu_loss_needs_both_layer_and_control(unset: str) -> None:
    model = _TinyDecoder()
    rmu = RMU()
    rmu.prepare(model, _forget(), pad_id=0)
    setattr(rmu, unset, None)
    with pytest.raises(BaselineError, match=r"prepare\(\)"):
        rmu.compute_loss(model, _batch())


def test_rmu_prepare_puts_the_control_on_the_model_device() -> None:
    model = _TinyDecoder().to("meta")
    rmu = RMU()
    rmu.prepare(model, _forget(), pad_id=0)
    assert rmu.module is model.layers[1]
    assert rmu.control is not None and rmu.control.device.type == "meta"
    assert sorted(rmu.original) == [
        "embed.weight", "layers.0.mlp.down_proj.weight", "layers.1.mlp.down_proj.weight"]


# forward-pass helpers -----------------------------------------------------------------------


@pytest.mark.parametrize("as_tuple", [False, True])
def test_layer_activations_is_the_hooked_layer_output(as_tuple: bool) -> None:
    model = _TinyDecoder(as_tuple=as_tuple)
    with torch.no_grad():
        model.layers[0].mlp.down_proj.weight.mul_(3.0)
    later: list[int] = []
    model.layers[1].register_forward_pre_hook(lambda *_: later.append(1))
    batch = collate(RETAIN)
    activations = layer_activations(model, model.layers[0], batch)
    assert torch.equal(activations, 3 * model.embed(batch["input_ids"]))
    assert later == []  # the forward pass stopped at the hooked layer
    assert not model.layers[0]._forward_hooks  # and the hook is gone
    ((mask, use_cache),) = model.calls
    assert mask is batch["attention_mask"] and use_cache is False


def test_layer_activations_of_a_module_outside_the_forward_pass_raise() -> None:
    with pytest.raises(BaselineError, match="not called"):
        layer_activations(_TinyDecoder(), nn.Linear(2, 2), collate(RETAIN))


def test_masked_mse_averages_masked_tokens_then_rows() -> None:
    target = torch.tensor([1.0, -1.0])
    offsets = torch.tensor([
        [[2.0, 2.0], [9.0, 9.0], [9.0, 9.0]],  # one masked token: (4 + 4) / 2 = 4
        [[2.0, 0.0], [0.0, 2.0], [9.0, 9.0]],  # two: (2 + 2) / 2 = 2
        [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],  # none: 0, not NaN
    ])
    mask = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    assert masked_mse(target + offsets, target, mask).item() == 2.0  # (4 + 2 + 0) / 3


def test_text_config() -> None:
    inner = SimpleNamespace(num_hidden_layers=3)
    model = nn.Module()
    model.config = SimpleNamespace(get_text_config=lambda: inner)  # a multimodal config
    assert text_config(model) is inner
    plain = _configured(2)
    assert text_config(plain) is plain.config
    with pytest.raises(BaselineError, match="Linear"):
        text_config(nn.Linear(2, 2))


def test_decoder_layer_needs_exactly_one_match() -> None:
    model = _TinyDecoder()
    assert decoder_layer(model, 1) is model.layers[1]
    with pytest.raises(BaselineError, match=r"layers\.5"):
        decoder_layer(model, 5)
    twice = nn.Module()
    twice.encoder, twice.decoder = _TinyDecoder(), _TinyDecoder()
    with pytest.raises(BaselineError):
        decoder_layer(twice, 0)
