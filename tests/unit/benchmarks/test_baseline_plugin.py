"""The harness's ``baseline`` method kind on a tiny random Gemma 3 saved to disk (CPU, seconds).

Variants per α, α = 0 serving the original weights exactly and α = 1 the unlearned ones through
the transformers backend, checkpoint selection, and the on-disk cache of the trained state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

from benchmarks.baselines import harness_plugin
from benchmarks.baselines.harness_plugin import STATE_FILE, baseline_variants, training_data
from benchmarks.datasets import Benchmark, ForgetTarget, Probe
from benchmarks.harness.backends import RecordingBackend
from benchmarks.harness.cache import ResultCache
from benchmarks.harness.config import MethodSpec, parse_bench_config
from benchmarks.harness.methods import model_variants
from benchmarks.harness.runner import run_tasks
from benchmarks.harness.tasks import probe_task
from benchmarks.harness.transport import InProcessDeployment
from proxy.backends import build_backend
from proxy.core.types import GenerationParams
from proxy.core.config import (
    DocumentConfig, ForgetTargetConfig, PolicyConfig, QAExample, TransformersModelConfig,
)
from proxy.core.errors import ConfigError

FORGET_DOCS = (
    "Quenna Vix wrote the Zorblax saga in Ostrava .",
    "Quenna Vix was born on a barge near Lyon .",
    "Quenna Vix studied glass blowing and knots .",
    "Quenna Vix won the Amber Lantern twice .",
)
RETAIN_DOCS = (
    "Paris is the capital of France .",
    "A spider has eight legs .",
    "The sky is blue by day .",
    "Bees make honey and wax .",
)
TRAIN = {"lr": 1e-2, "max_steps": 4, "batch_size": 2, "max_length": 32, "weight_decay": 0.0,
         "frozen_patterns": ["embed_tokens"]}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 with a word-level tokenizer, saved as an HF checkpoint dir."""
    words = sorted({w for text in FORGET_DOCS + RETAIN_DOCS for w in text.split()})
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                       special_tokens=[("<bos>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                        bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
        sliding_window=32, attn_implementation="eager", pad_token_id=0, bos_token_id=1,
        eos_token_id=2)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-gemma")
    Gemma3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _benchmark() -> tuple[PolicyConfig, Benchmark]:
    target = ForgetTarget(id="t1", name="Quenna Vix", documents=FORGET_DOCS)
    benchmark = Benchmark(name="toy", targets=(target,), retain_documents=RETAIN_DOCS)
    base = PolicyConfig(forget=[ForgetTargetConfig(
        id="t1", name="Quenna Vix", documents=[DocumentConfig(text=t) for t in FORGET_DOCS])])
    return base, benchmark


def _spec(model_dir: Path, cache: Path, *, method: str = "grad_diff", knob: str | None = "alpha",
          values: list[float] | None = None, **train: Any) -> MethodSpec:
    options = {"method": method, "train": {**TRAIN, **train}, "model_path": str(model_dir),
               "device": "cpu", "batch_size": 2, "cache_dir": str(cache)}
    return MethodSpec(name=method, kind="baseline", options=options, knob=knob,
                      values=[0.0, 0.5, 1.0] if values is None and knob else values or [])


def _params(cfg: TransformersModelConfig) -> dict[str, torch.Tensor]:
    backend = build_backend("m", cfg)
    return {k: v.detach().clone() for k, v in backend.model.named_parameters()}  # type: ignore[attr-defined]


def test_alpha_sweep_serves_original_mixed_and_unlearned(model_dir: Path, tmp_path: Path) -> None:
    base, benchmark = _benchmark()
    variants = baseline_variants(_spec(model_dir, tmp_path), base, benchmark)
    assert [v.label for v in variants] == ["grad_diff@0", "grad_diff@0.5", "grad_diff@1"]
    assert all(v.policy is None and v.knob == "alpha" for v in variants)
    models = [v.model for v in variants]
    assert all(isinstance(m, TransformersModelConfig) for m in models)
    assert [m.mix_alpha for m in models] == [0.0, 0.5, 1.0]  # type: ignore[union-attr]
    assert len({m.weights for m in models}) == 1  # type: ignore[union-attr]

    original = {k: v.detach() for k, v in Gemma3ForCausalLM.from_pretrained(model_dir)
                .named_parameters()}
    unlearned = torch.load(Path(models[2].weights), weights_only=True)  # type: ignore[union-attr]
    assert unlearned and not any("embed_tokens" in name for name in unlearned)
    at = [_params(m) for m in models]  # type: ignore[arg-type]
    for name, value in original.items():
        assert torch.equal(at[0][name], value), name  # α = 0: the original exactly
        expected = unlearned.get(name, value)
        assert torch.equal(at[2][name], expected), name  # α = 1: the unlearned exactly
        assert torch.allclose(at[1][name], (value + expected) / 2, atol=1e-6), name
    assert any(not torch.equal(unlearned[n], original[n]) for n in unlearned)  # it trained


def test_variants_share_untrained_parameters_and_generate(model_dir: Path, tmp_path: Path) -> None:
    base, benchmark = _benchmark()
    variants = baseline_variants(_spec(model_dir, tmp_path, method="ga", values=[0.5, 1.0]),
                                 base, benchmark)
    one, two = (build_backend("m", v.model) for v in variants)  # type: ignore[arg-type]
    embed = "model.embed_tokens.weight"
    p1, p2 = dict(one.model.named_parameters()), dict(two.model.named_parameters())  # type: ignore[attr-defined]
    assert p1[embed] is p2[embed]  # frozen embeddings: one copy for the whole sweep
    assert p1["model.layers.1.mlp.up_proj.weight"] is not p2["model.layers.1.mlp.up_proj.weight"]
    [generation] = one.generate(["Quenna Vix was born"],  # type: ignore[attr-defined]
                                GenerationParams(max_tokens=3, temperature=0.0))
    assert generation.usage.completion_tokens >= 1


def test_trained_state_is_cached_on_disk(model_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    base, benchmark = _benchmark()
    first = baseline_variants(_spec(model_dir, tmp_path, method="npo"), base, benchmark)
    weights = Path(first[0].model.weights)  # type: ignore[union-attr]
    assert weights.name == STATE_FILE and (weights.parent / "meta.json").is_file()

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("trained again instead of using the cache")

    monkeypatch.setattr(harness_plugin, "_train", no_training)
    again = baseline_variants(_spec(model_dir, tmp_path, method="npo"), base, benchmark)
    assert [v.model for v in again] == [v.model for v in first]
    with pytest.raises(AssertionError, match="trained again"):  # another config: another key
        baseline_variants(_spec(model_dir, tmp_path, method="npo", max_steps=3), base, benchmark)
    assert [p.name for p in tmp_path.iterdir()] == [weights.parent.name]  # no half artefact


def test_checkpoint_selection_by_step(model_dir: Path, tmp_path: Path) -> None:
    base, benchmark = _benchmark()
    spec = _spec(model_dir, tmp_path, method="ga", knob="step", values=[2, 4], save_every=2)
    early, final = baseline_variants(spec, base, benchmark)
    assert [early.label, final.label] == ["ga@2", "ga@4"]
    assert early.model.mix_alpha == final.model.mix_alpha == 1.0  # type: ignore[union-attr]
    last = torch.load(Path(final.model.weights), weights_only=True)  # type: ignore[union-attr]
    end = torch.load(Path(final.model.weights).parent / STATE_FILE, weights_only=True)  # type: ignore[union-attr]
    assert all(torch.equal(last[k], end[k]) for k in end)
    with pytest.raises(ConfigError, match="no checkpoint for step 3"):
        baseline_variants(_spec(model_dir, tmp_path, method="ga", knob="step", values=[3],
                                save_every=2), base, benchmark)


def test_training_data_uses_documents_else_example_answers() -> None:
    base, benchmark = _benchmark()
    assert training_data(base, benchmark) == (list(FORGET_DOCS), list(RETAIN_DOCS))
    qa = PolicyConfig(forget=[ForgetTargetConfig(id="a", name="A", questions=[
        QAExample(question="Who is A?", answer="A writer."), QAExample(question="Why?")])],
        retain=[QAExample(question="Sky?", answer="Blue.")])
    assert training_data(qa, Benchmark(name="tofu", targets=())) == (
        [("Who is A?", "A writer.")], [("Sky?", "Blue.")])
    two = PolicyConfig(forget=[
        ForgetTargetConfig(id=t, name=t, documents=[DocumentConfig(text=f"{t}{i}") for i in
                                                    range(n)]) for t, n in (("a", 3), ("b", 1))])
    assert training_data(two, benchmark)[0] == ["a0", "b0", "a1", "a2"]  # targets alternate


def test_bad_options_and_configs_are_config_errors(model_dir: Path, tmp_path: Path) -> None:
    base, benchmark = _benchmark()
    bad = MethodSpec(name="ga", kind="baseline", options={"methd": "ga"})
    with pytest.raises(ConfigError, match="options.methd"):
        baseline_variants(bad, base, benchmark)
    with pytest.raises(ConfigError, match="unknown unlearning method"):
        baseline_variants(_spec(model_dir, tmp_path, method="gaa", knob=None), base, benchmark)
    with pytest.raises(ConfigError, match="knob 'lr'"):
        baseline_variants(_spec(model_dir, tmp_path, knob="lr", values=[1.0]), base, benchmark)
    with pytest.raises(ValueError, match="mix_alpha needs weights"):
        TransformersModelConfig(backend="transformers", mix_alpha=0.5)
    with pytest.raises(ConfigError, match="weights: cannot read"):
        build_backend("m", TransformersModelConfig(backend="transformers", model_path=str(
            model_dir), device="cpu", weights=str(tmp_path / "absent.pt")))


def test_harness_serves_baselines_one_model_at_a_time_with_batched_answers(
        model_dir: Path, tmp_path: Path) -> None:
    base, benchmark = _benchmark()
    engine = {"backend": "transformers", "model_path": str(model_dir), "device": "cpu",
              "batch_size": 2}
    original = MethodSpec(name="orig", kind="model", options=engine)
    variants = (model_variants(original, base, benchmark)
                + baseline_variants(_spec(model_dir, tmp_path, method="ga", values=[0.5, 1.0]),
                                    base, benchmark))
    assert [v.training is None for v in variants] == [True, False, False]
    assert variants[1].training["steps"] == TRAIN["max_steps"]  # type: ignore[index]
    config = parse_bench_config({"name": "t", "model": engine, "datasets": [{"name": "toy"}],
                                 "methods": [{"name": "none"}]})
    probes = [Probe(id=f"p{i}", question=f"Quenna Vix {w}", answer="x", kind="forget")
              for i, w in enumerate(["wrote", "was born", "studied", "won", "Lyon"])]
    tasks = [probe_task("toy", p, config.generation, model="m", seed=0) for p in probes]
    with asyncio.Runner() as loop:
        bench_model = RecordingBackend(build_backend("t", config.model))
        deployment = InProcessDeployment(config, variants, backend=bench_model,
                                         state_dir=tmp_path / "state", loop=loop)
        for variant in variants:
            asker = deployment.asker(variant)
            assert len(deployment.pipeline.backends) == 2  # the bench model + this variant's
            answers = run_tasks(loop, asker, tasks, ResultCache(tmp_path / f"{variant.slug}.jsonl"),
                                desc=variant.label)
            assert asker.backend.prefetch_ms > 0 and asker.backend.calls == len(tasks)
            inner = asker.backend.inner
            single = [inner.generate([t.request.prompt], t.request.params)[0]  # type: ignore[attr-defined]
                      for t in tasks]
            assert [answers[t.key].text for t in tasks] == [g.text for g in single]
        deployment.close()
        assert list(deployment.pipeline.backends) == [config.model_name]
