"""The harness's ``baseline`` method kind: weight-based unlearning rows next to the policies.

A bench method such as::

    - name: ga
      kind: baseline
      options: {method: ga, train: {max_steps: 10, frozen_patterns: [embed_tokens]}}
      knob: alpha                    # model mixing (Wang et al. 2024); or ``step``: checkpoints
      values: [0.25, 0.5, 1.0]

trains once on the dataset's forget material (each target's documents, e.g. RWKU's mia_forget
passages; a target without documents: its example QA pairs, never a scored probe) with the
retain material (``benchmark.retain_documents``, else the policy's retain QA pairs), caches the
trained-parameter state on disk under a hash of (method, config, data, model, device), and
returns one :class:`~benchmarks.harness.methods.Variant` per knob value: no policy, and a
transformers model config that serves θ = (1 − α)·θ_orig + α·θ_unlearned (``weights`` +
``mix_alpha``), so each row is scored by the same engine and probes as every other row.

``options``: ``method`` (a :data:`~benchmarks.baselines.METHODS` alias; default the row's name),
``train`` (the method's config fields), ``model_path`` / ``device`` / ``batch_size`` (the model
trained and served: default the embedded Gemma on ``auto``; use the bench model's values),
``max_forget`` / ``max_retain`` (caps on the training items; forget items alternate between the
targets), ``cache_dir``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmarks.datasets import Benchmark
from benchmarks.harness.config import MethodSpec
from benchmarks.harness.methods import Variant, parse_options
from proxy.core.config import PolicyConfig, TransformersModelConfig
from proxy.cache_dirs import build_cached_dir, is_complete
from proxy.core.errors import ConfigError

__all__ = ["BaselineOptions", "baseline_variants", "training_data", "unlearned_artefact"]

log = logging.getLogger("unlearn_proxy.bench")

STATE_FILE = "unlearned.pt"
META_FILE = "meta.json"
CACHE_VERSION = 1
KNOBS = ("alpha", "step")

Item = str | tuple[str, str]


class BaselineOptions(BaseModel):
    """``MethodSpec.options`` of a ``baseline`` row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str | None = Field(None, description="unlearning method alias; default: row name")
    train: dict[str, Any] = Field(default_factory=dict, description="the method's config")
    model_path: str | None = Field(None, description="HF dir or GGUF; default: embedded Gemma")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(8, gt=0, description="generation batch size when serving")
    max_forget: int | None = Field(None, gt=0)
    max_retain: int | None = Field(None, gt=0)
    cache_dir: str | None = Field(None, description="default: <unlearn-proxy cache>/baselines")


def training_data(base: PolicyConfig, benchmark: Benchmark) -> tuple[list[Item], list[Item]]:
    """``(forget, retain)`` items: what the policies get too, never a scored probe.

    Forget: every target's documents (passages), or its example QA pairs when it has none,
    interleaved target by target (so a cap keeps every target). Retain: the benchmark's retain
    documents, else the policy's retain QA pairs.
    """
    per_target: list[list[Item]] = []
    for target in base.forget:
        documents: list[Item] = [d.text for d in target.documents if d.text]
        per_target.append(documents or [(q.question, q.answer) for q in target.questions
                                        if q.answer])
    longest = max((len(items) for items in per_target), default=0)
    forget = [items[i] for i in range(longest) for items in per_target if i < len(items)]
    retain: list[Item] = list(benchmark.retain_documents) or [
        (q.question, q.answer) for q in base.retain if q.answer]
    return forget, retain


def _model_fingerprint(model_path: str | None) -> str:
    from proxy.core.embedded import embedded_gguf_sha256
    from proxy.core.files import file_sha256

    if model_path is None:
        return embedded_gguf_sha256()
    path = Path(model_path).expanduser().resolve()
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise ConfigError(f"model_path: model not found: {path}")
    digest = hashlib.sha256(str(path).encode())
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def _cache_root(options: BaselineOptions) -> Path:
    if options.cache_dir is not None:
        return Path(options.cache_dir).expanduser()
    from proxy.core.embedded import cache_dir

    return cache_dir() / "baselines"


def unlearned_artefact(options: BaselineOptions, method: str, forget: Sequence[Item],
                       retain: Sequence[Item], *, label: str = "") -> Path:
    """The dir holding ``unlearned.pt`` (and checkpoints, ``meta.json``), training if needed.

    Keyed by a hash of (method, full config, data, model fingerprint, device type); written to a
    temporary dir and renamed into place, so an interrupted run leaves no half artefact.
    """
    from benchmarks.baselines import METHODS, BaselineError
    from proxy.backends.hf_loader import resolve_device

    try:
        cls = METHODS.get(method)
        config = cls.config_cls.from_mapping(options.train)
    except (LookupError, BaselineError) as exc:
        raise ConfigError(f"method {label or method!r}: {exc}") from None
    device = resolve_device(options.device)
    key_data = {"version": CACHE_VERSION, "method": method,
                "config": dataclasses.asdict(config), "forget": list(forget),
                "retain": list(retain) if cls(config).uses_retain else [],
                "model": _model_fingerprint(options.model_path), "device": device.type}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=list).encode()).hexdigest()
    target = _cache_root(options) / f"{method}-{key[:16]}"
    if is_complete(target):
        log.info("%s: cached unlearned weights %s", label or method, target)
        return target
    return build_cached_dir(
        target, key, lambda tmp: _train(options, method, config, forget, retain, tmp,
                                        label=label or method)
    )


def _train(options: BaselineOptions, method: str, config: Any, forget: Sequence[Item],
           retain: Sequence[Item], out: Path, *, label: str) -> None:
    import torch

    from benchmarks.baselines import BaselineError, unlearn
    from proxy.backends.hf_loader import load_causal_lm

    started = time.perf_counter()
    model, tokenizer, info = load_causal_lm(options.model_path, device=options.device)
    log.info("%s: training %s on %d forget / %d retain items (%s)", label, method, len(forget),
             len(retain), info.device)
    try:
        result = unlearn(model, tokenizer, method, forget, retain, config=config,
                         device=info.device, output_dir=out, progress=True)
    except BaselineError as exc:
        raise ConfigError(f"method {label!r}: {exc}") from None
    finally:
        del model
    torch.save(result.final_state, out / STATE_FILE)
    meta = {"method": method, "config": dataclasses.asdict(config), "model": info.model_id,
            "model_sha256": info.sha256, "device": result.device, "dtype": result.dtype,
            "steps": result.steps, "train_wall_s": round(result.wall_time_s, 3),
            "total_wall_s": round(time.perf_counter() - started, 3),
            "forget_items": len(forget), "retain_items": len(retain),
            "trained_parameters": len(result.trained_parameters),
            "checkpoints": [p.name for p in result.checkpoints], "loss_log": result.loss_log}
    (out / META_FILE).write_text(json.dumps(meta, indent=1, default=list), encoding="utf-8")
    log.info("%s: trained in %.1f s (%d steps, %s)", label, result.wall_time_s, result.steps,
             result.device)


def _weights(spec: MethodSpec, artefact: Path, value: float | None) -> tuple[Path, float]:
    if spec.knob == "step" and value is not None:
        if not float(value).is_integer():
            raise ConfigError(f"method {spec.name!r}: step {value} is not an integer")
        path = artefact / f"checkpoint-{int(value):06d}.pt"
        if not path.is_file():
            have = sorted(p.name for p in artefact.glob("checkpoint-*.pt"))
            raise ConfigError(f"method {spec.name!r}: no checkpoint for step {int(value)} "
                              f"(set train.save_every; have {have})")
        return path, 1.0
    alpha = 1.0 if value is None else float(value)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"method {spec.name!r}: alpha {value} is outside [0, 1]")
    return artefact / STATE_FILE, alpha


def baseline_variants(spec: MethodSpec, base: PolicyConfig,
                      benchmark: Benchmark) -> list[Variant]:
    """The ``baseline`` VariantBuilder: one served model per knob value (no knob: α = 1)."""
    options: BaselineOptions = parse_options(spec, BaselineOptions)
    if spec.knob is not None and spec.knob not in KNOBS:
        raise ConfigError(f"method {spec.name!r}: knob {spec.knob!r}: a baseline sweeps "
                          f"{' or '.join(KNOBS)}")
    method = options.method or spec.name
    forget, retain = training_data(base, benchmark)
    forget = forget[:options.max_forget] if options.max_forget else forget
    retain = retain[:options.max_retain] if options.max_retain else retain
    if not forget:
        raise ConfigError(f"method {spec.name!r}: {benchmark.name} gives no forget material")
    artefact = unlearned_artefact(options, method, forget, retain, label=spec.name)
    meta = json.loads((artefact / META_FILE).read_text(encoding="utf-8"))
    training = {"wall_s": meta["train_wall_s"], "device": meta["device"], "dtype": meta["dtype"],
                "steps": meta["steps"], "forget_items": meta["forget_items"],
                "retain_items": meta["retain_items"]}
    variants = []
    for value in list(spec.values) or [None]:
        weights, alpha = _weights(spec, artefact, value)
        model = TransformersModelConfig(
            backend="transformers", model_path=options.model_path, device=options.device,
            batch_size=options.batch_size, weights=str(weights), mix_alpha=alpha)
        variants.append(Variant(spec.name, spec.knob, value, None, model,
                                training=training))
    return variants
