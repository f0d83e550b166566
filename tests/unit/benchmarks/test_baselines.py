"""Weight-based unlearning baselines on a tiny randomly initialised Gemma 3 (CPU, seconds)."""

from __future__ import annotations

import copy
import json
import math
import pathlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from transformers import Gemma3ForCausalLM

from benchmarks.baselines import (
    IGNORE_INDEX,
    METHODS,
    BaselineConfigError,
    BaselineDataError,
    TrainConfig,
    UnlearnResult,
    collate,
    encode_items,
    encode_qa,
    list_checkpoints,
    load_checkpoint_step,
    load_state,
    mixed_weights,
    unlearn,
)
from benchmarks.baselines.ga import GradAscent
from benchmarks.baselines.idk_dpo import DEFAULT_REFUSALS, IdkDPO, IdkDPOConfig
from benchmarks.baselines.losses import decoder_layer, layer_activations, masked_mse, sequence_nll
from benchmarks.baselines.rmu import RMUConfig, steering_vector
from proxy.backends.mixing import MixingError, mix_models
from proxy.core.registry import RegistryError
from tests.baseline_models import FORGET, RETAIN, WordTokenizer, memorise, tiny_model

REFUSAL = "I don't know."
FAST = {"lr": 1e-3, "max_steps": 6, "batch_size": 4, "max_length": 64, "weight_decay": 0.0}
TOKENIZER = WordTokenizer()


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained() -> Gemma3ForCausalLM:
    """The tiny model after memorising forget and retain data (so there is something to forget)."""
    return memorise(tiny_model(), TOKENIZER, FORGET + RETAIN)


@pytest.fixture
def model(trained: Gemma3ForCausalLM) -> Gemma3ForCausalLM:
    return copy.deepcopy(trained)


@torch.no_grad()
def _mean_nll(model: torch.nn.Module, items: list[Any]) -> float:
    nll, count = sequence_nll(model, collate(encode_items(TOKENIZER, items, max_length=64)))
    return float((nll / count).mean())


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(
    model: torch.nn.Module,
    method: str,
    *,
    forget: Sequence[Any] = FORGET,
    retain: Sequence[Any] = RETAIN,
    output_dir: pathlib.Path | None = None,
    **overrides: Any,
) -> UnlearnResult:
    config: Mapping[str, Any] = {**FAST, **overrides}
    return unlearn(
        model,
        TOKENIZER,
        method,
        forget,
        retain,
        config=config,
        output_dir=output_dir,
        progress=False,
    )


# --- data ------------------------------------------------------------------------------------


def test_encode_qa_puts_the_loss_on_the_answer_only() -> None:
    example = encode_qa(TOKENIZER, "Q?", "A.", max_length=64)
    prompt = TOKENIZER("Question: Q?\nAnswer:")["input_ids"]
    answer = TOKENIZER(" A.", add_special_tokens=False)["input_ids"] + [2]
    assert example["input_ids"].tolist() == prompt + answer
    assert example["labels"].tolist() == [IGNORE_INDEX] * len(prompt) + answer


def test_passages_carry_the_loss_on_every_token_and_truncate() -> None:
    (example,) = encode_items(TOKENIZER, ["a long passage about Quenna Vix"], max_length=4)
    assert example["input_ids"].tolist() == example["labels"].tolist()
    assert len(example["input_ids"]) == 4


def test_bad_items_raise() -> None:
    with pytest.raises(BaselineDataError):
        encode_qa(TOKENIZER, "a very long question" * 5, "x", max_length=16)
    with pytest.raises(BaselineDataError):
        encode_items(TOKENIZER, [("only a question",)], max_length=16)  # type: ignore[list-item]


def test_collate_pads_right_with_ignored_labels() -> None:
    batch = collate(encode_items(TOKENIZER, ["a b c d", "a b"], max_length=8), pad_id=0)
    assert batch["input_ids"].tolist()[1] == [
        1,
        *TOKENIZER("a b", add_special_tokens=False)["input_ids"],
        0,
        0,
    ]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch["labels"][1, 3:].tolist() == [IGNORE_INDEX] * 2


# --- methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "steps"),
    [("ga", 6), ("grad_diff", 6), ("npo", 6), ("simnpo", 10)],  # SimNPO's forget weight is 1/8
)
def test_forget_nll_rises(model: torch.nn.Module, method: str, steps: int) -> None:
    before = _mean_nll(model, FORGET)
    result = _run(model, method, max_steps=steps)
    assert _mean_nll(model, FORGET) > before + 1.0
    assert result.loss_log[-1]["forget_loss"] < result.loss_log[0]["forget_loss"]
    assert result.steps == len(result.loss_log) == steps
    assert (result.device, result.dtype) == ("cpu", "float32")


def test_passages_unlearn_without_retain_data_for_ga_only(model: torch.nn.Module) -> None:
    passages = [f"{q} {a}" for q, a in FORGET]
    before = _mean_nll(model, passages)
    _run(model, "ga", forget=passages, retain=[])
    assert _mean_nll(model, passages) > before + 1.0
    with pytest.raises(BaselineDataError):
        _run(model, "grad_diff", forget=passages, retain=[])


def test_grad_diff_keeps_retain_nll_lower_than_ga(trained: torch.nn.Module) -> None:
    ga, grad_diff = copy.deepcopy(trained), copy.deepcopy(trained)
    _run(ga, "ga")
    _run(grad_diff, "grad_diff")
    assert _mean_nll(grad_diff, RETAIN) < _mean_nll(ga, RETAIN)


def test_idk_dpo_prefers_the_refusal(model: torch.nn.Module) -> None:
    refusals = [(q, REFUSAL) for q, _ in FORGET]

    def margin() -> float:
        return _mean_nll(model, FORGET) - _mean_nll(model, refusals)

    before = margin()
    _run(model, "idk_dpo", refusals=[REFUSAL])
    assert margin() > before + 0.5


def test_idk_dpo_pairs_each_question_with_a_seeded_refusal() -> None:
    items = FORGET + RETAIN
    examples = IdkDPO(IdkDPOConfig(seed=5, max_length=64)).encode_forget(TOKENIZER, items)
    rng = random.Random(5)  # 8 draws from 6 refusals: another seed agrees with odds 6^-8
    for (question, answer), example in zip(items, examples, strict=True):
        true = encode_qa(TOKENIZER, question, answer, max_length=64)
        refusal = encode_qa(TOKENIZER, question, rng.choice(DEFAULT_REFUSALS), max_length=64)
        for got, expected in ((example, true), (example["alternate"], refusal)):
            assert got["input_ids"].tolist() == expected["input_ids"].tolist()
            assert got["labels"].tolist() == expected["labels"].tolist()


def test_rmu_steers_forget_activations_and_trains_only_mlps(model: torch.nn.Module) -> None:
    original = _state(model)
    control = steering_vector(64, 20.0, seed=0)
    forget = collate(encode_items(TOKENIZER, FORGET, max_length=64))
    mask = forget["labels"] != IGNORE_INDEX

    @torch.no_grad()
    def distance() -> float:
        return float(
            masked_mse(layer_activations(model, decoder_layer(model, 1), forget), control, mask)
        )

    before = distance()
    result = _run(model, "rmu", steering_coeff=20.0, alpha=1.0, lr=3e-3)
    assert distance() < 0.8 * before
    assert result.trained_parameters == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, original[k])}
    assert changed == set(result.trained_parameters)


def test_registry_aliases_match_class_names() -> None:
    assert METHODS.names() == sorted(["ga", "grad_diff", "idk_dpo", "npo", "rmu", "simnpo"])
    for alias in METHODS.names():
        assert METHODS.get(alias).name == alias
    with pytest.raises(RegistryError):
        METHODS.get("gradient_ascent")


# --- controls --------------------------------------------------------------------------------


def test_bounded_forget_loss_drops_samples_past_the_ceiling(model: torch.nn.Module) -> None:
    batch = collate(encode_items(TOKENIZER, FORGET[:2], max_length=64))
    nll, count = sequence_nll(model, batch)
    mean_nll = (nll / count).detach()
    ceiling = float(mean_nll.mean())  # one sample on each side of it
    bounded = GradAscent(TrainConfig(forget_nll_ceiling=ceiling)).compute_loss(
        model, {"forget": batch}
    )
    below = int(mean_nll.argmin())
    assert bounded.metrics["active_fraction"] == 0.5
    assert bounded.loss.item() == pytest.approx(-mean_nll[below].item(), rel=1e-5)


def test_training_stops_once_every_sample_is_past_the_ceiling(model: torch.nn.Module) -> None:
    original = _state(model)
    result = _run(model, "ga", forget_nll_ceiling=0.0)
    assert all(entry["active_fraction"] == 0.0 for entry in result.loss_log)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


def test_mixing_is_exact_at_the_endpoints(model: torch.nn.Module) -> None:
    result = _run(model, "ga", max_steps=2)
    orig, new = result.original_state, result.final_state
    for alpha, expected in ((0.0, orig), (1.0, new)):
        mixed = mix_models(orig, new, alpha)
        assert all(torch.equal(mixed[k], expected[k]) for k in orig)
    half = mix_models(orig, new, 0.5)
    name = result.trained_parameters[0]
    assert torch.allclose(half[name], (orig[name] + new[name]) / 2, atol=1e-7)
    with pytest.raises(MixingError, match="alpha must be in"):
        mix_models(orig, new, 1.5)


def test_mixed_weights_applies_then_restores(model: torch.nn.Module) -> None:
    result = _run(model, "ga", max_steps=2)
    unlearned = _state(model)
    with mixed_weights(model, result.original_state, result.final_state, 0.0):
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in result.original_state.items())
    assert all(torch.equal(v, unlearned[k]) for k, v in model.state_dict().items())


def test_checkpoints_and_loss_log_reload_bit_for_bit(
    model: torch.nn.Module, tmp_path: pathlib.Path
) -> None:
    result = _run(model, "grad_diff", max_steps=4, save_every=2, output_dir=tmp_path)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4]
    last = load_checkpoint_step(tmp_path, 4)
    assert all(torch.equal(last[k], v) for k, v in result.final_state.items())
    fresh = tiny_model()
    load_state(fresh, result.original_state)
    load_state(fresh, last)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())
    lines = (tmp_path / "loss_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_same_seed_same_weights(trained: torch.nn.Module) -> None:
    first, second = copy.deepcopy(trained), copy.deepcopy(trained)
    a, b = _run(first, "npo", max_steps=3), _run(second, "npo", max_steps=3)
    assert all(torch.equal(a.final_state[k], b.final_state[k]) for k in a.final_state)


def test_bf16_autocast_keeps_fp32_weights(model: torch.nn.Module) -> None:
    result = _run(model, "npo", max_steps=2, dtype="bfloat16")
    assert result.dtype == "bfloat16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(math.isfinite(entry["loss"]) for entry in result.loss_log)


def test_freezing_options(model: torch.nn.Module) -> None:
    original = _state(model)
    result = _run(model, "ga", max_steps=2, train_last_n_layers=1, frozen_patterns=["norm"])
    assert result.trained_parameters
    assert all(".layers.1." in n and "norm" not in n for n in result.trained_parameters)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, original[k])}
    assert changed == set(result.trained_parameters)
    assert all(p.requires_grad for p in model.parameters())  # flags restored


@pytest.mark.parametrize(
    ("method", "config"),
    [
        ("ga", {"max_stepz": 3}),
        ("rmu", {"forget_nll_ceiling": 2.0}),
        ("npo", {"beta": 0.0}),
        ("ga", {"save_every": 1}),  # no output_dir
        ("ga", {"trainable_patterns": ["("]}),
    ],
)
def test_bad_configs_raise(model: torch.nn.Module, method: str, config: dict[str, Any]) -> None:
    with pytest.raises(BaselineConfigError):
        _run(model, method, **config)


def test_a_config_of_another_method_is_refused(model: torch.nn.Module) -> None:
    with pytest.raises(BaselineConfigError):
        unlearn(model, TOKENIZER, "npo", FORGET, RETAIN, config=RMUConfig(), progress=False)
