"""The bench config (``unlearn-proxy bench --config BENCH.yaml``), validated with pydantic.

Every model forbids unknown keys; :func:`load_bench_config` turns any problem into a
:class:`~proxy.core.errors.ConfigError` naming the file and the field path (``methods.2.knob``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, field_validator, model_validator,
)

from proxy.core.config import MethodConfig, ModelConfig, read_yaml, validate_mapping
from proxy.core.errors import ConfigError

__all__ = ["BenchConfig", "DatasetSpec", "GenerationSettings", "MethodSpec", "SampleSizes",
           "load_bench_config", "parse_bench_config"]

DEFAULT_STOP = ("\nQuestion:", "\n\n")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSettings(_Strict):
    """How every probe is asked (greedy by default, so runs are reproducible)."""

    request_kind: Literal["completion", "chat"] = Field(
        "completion", description="completion: the benchmark's prompt text ending in 'Answer:'")
    max_tokens: int = Field(24, gt=0)
    mcq_max_tokens: int = Field(4, gt=0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))


class SampleSizes(_Strict):
    """Probes per kind (``None``: all of them)."""

    forget: int | None = Field(40, ge=0)
    neighbour: int | None = Field(40, ge=0)
    retain: int | None = Field(0, ge=0)
    utility: int | None = Field(0, ge=0)


class DatasetSpec(_Strict):
    """One benchmark: which probes, how they are selected and which metrics run on them."""

    name: str = Field(description="a benchmarks.datasets alias: rwku, tofu, wmdp, muse")
    label: str | None = Field(
        None, min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$",
        description="how the report names it (default: name); distinct labels let one "
                    "benchmark appear twice, e.g. two TOFU splits")
    loader: dict[str, Any] = Field(default_factory=dict, description="load_benchmark kwargs")
    mode: Literal["generate", "detect"] = Field(
        "generate", description="detect: block rates against an oracle that answers the gold")
    candidates: SampleSizes = Field(default_factory=SampleSizes)
    max_scored: int | None = Field(None, gt=0, description="cap per kind after the known filter")
    known_min_rouge: float | None = Field(
        0.5, ge=0.0, le=1.0, description="score only probes the original model answers")
    holdout_share: float = Field(
        0.25, ge=0.0, lt=1.0, description="forget/neighbour/retain probes kept for the policy")
    max_documents: int | None = Field(None, ge=0, description="forget documents per target")
    extraction_strength: int | None = Field(None, ge=1, description="ES prefix grid size")
    likelihood: bool = Field(False, description="tier L metrics (needs a log-prob engine)")

    @property
    def key(self) -> str:
        """The dataset's name in the report, its rows, items and files: label, else name."""
        return self.label or self.name

    @model_validator(mode="after")
    def _loader_args(self) -> DatasetSpec:
        clash = sorted({"limit", "seed", "data_dir"} & set(self.loader))
        if clash:
            raise ValueError(f"loader: {', '.join(clash)} are set by the harness")
        return self


class MethodSpec(_Strict):
    """A method row: a policy (``policy``: proxy method configs) or another registered kind.

    ``knob`` names ``<method type>.<field>`` of the policy (``input_detector.threshold``) or,
    for non-policy kinds, a key their runner understands; ``values`` sweep it.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    kind: str = "policy"
    policy: list[MethodConfig] = Field(default_factory=list)
    knob: str | None = None
    values: list[float] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict, description="for non-policy kinds")
    reference: str | None = Field(
        None, description="the row its utility is matched against (default: no defence), "
                          "e.g. the model row of the engine that serves a baseline")
    datasets: list[str] = Field(
        default_factory=list, description="names of the datasets it runs on (default: all)")

    def runs_on(self, dataset: str) -> bool:
        """Whether this method has a row on the dataset named ``dataset``."""
        return not self.datasets or dataset in self.datasets

    @property
    def is_reference(self) -> bool:
        """The no-defence row: a policy kind with no methods."""
        return self.kind == "policy" and not self.policy

    @model_validator(mode="after")
    def _knob(self) -> MethodSpec:
        if (self.knob is None) != (not self.values):
            raise ValueError("knob and values go together")
        if self.kind != "policy" or self.knob is None:
            return self
        kind, _, field = self.knob.partition(".")
        method = next((m for m in self.policy if m.type == kind), None)
        if method is None:
            raise ValueError(f"knob {self.knob!r}: the policy has no {kind!r} method")
        if field not in type(method).model_fields:
            raise ValueError(f"knob {self.knob!r}: {kind} has no field {field!r}")
        return self


class BenchConfig(_Strict):
    """A whole benchmark run."""

    name: str = Field(min_length=1)
    seed: int = 0
    out_dir: str | None = Field(None, description="default: benchmarks/results/<name>")
    state_dir: str | None = Field(None, description="compiled policy artefacts (cache)")
    model_name: str = "model"
    model: ModelConfig
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    transport: Literal["in_process", "http"] = "in_process"
    matched_utility_points: float = Field(2.0, ge=0.0)
    datasets: list[DatasetSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)

    @field_validator("methods")
    @classmethod
    def _one_reference(cls, methods: list[MethodSpec]) -> list[MethodSpec]:
        names = [m.name for m in methods]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate method names {', '.join(dupes)}")
        if sum(m.is_reference for m in methods) != 1:
            raise ValueError("needs exactly one no-defence row (kind policy, empty policy)")
        for method in methods:
            if method.reference is not None and method.reference not in names:
                raise ValueError(f"method {method.name!r}: reference {method.reference!r} is "
                                 "not a method of this config")
        return methods

    @model_validator(mode="after")
    def _consistent(self) -> BenchConfig:
        names = {spec.name for spec in self.datasets}
        keys = [spec.key for spec in self.datasets]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"datasets: {', '.join(twice)} listed twice; give each a distinct "
                             "`label`")
        methods = {method.name: method for method in self.methods}
        for index, method in enumerate(self.methods):
            unknown = sorted(set(method.datasets) - names)
            if unknown:
                raise ValueError(f"methods.{index}.datasets: {', '.join(unknown)} is not a "
                                 f"dataset of this config (have: {', '.join(sorted(names))})")
            if method.is_reference and method.datasets:
                raise ValueError(f"methods.{index}.datasets: the no-defence row runs on every "
                                 "dataset")
            missing = [d for d in names if method.runs_on(d) and method.reference
                       and not methods[method.reference].runs_on(d)]
            if missing:
                raise ValueError(f"methods.{index}.reference: {method.reference!r} does not run "
                                 f"on {', '.join(sorted(missing))}")
        for index, spec in enumerate(self.datasets):
            where = f"datasets.{index}"
            own_model = [m.name for m in self.methods
                         if m.kind != "policy" and m.runs_on(spec.name)]
            if spec.mode == "detect" and own_model:
                raise ValueError(f"{where}.mode 'detect' scores guards against an oracle model; "
                                 f"{', '.join(own_model)} serve their own model: give them "
                                 "`datasets:` without this one")
            if spec.extraction_strength and self.generation.request_kind != "completion":
                raise ValueError(f"{where}.extraction_strength needs prefill, i.e. "
                                 "generation.request_kind 'completion'")
            if spec.likelihood and (self.transport != "in_process" or
                                    self.model.backend != "transformers"):
                raise ValueError(f"{where}.likelihood needs the transformers backend and "
                                 "transport 'in_process'")
            if spec.mode == "detect" and self.transport != "in_process":
                raise ValueError(f"{where}.mode 'detect' needs transport 'in_process' (the "
                                 "oracle model lives in this process)")
        return self

    @property
    def reference(self) -> MethodSpec:
        """The no-defence method."""
        return next(m for m in self.methods if m.is_reference)

    @property
    def references(self) -> dict[str, str]:
        """Each method's reference row: its ``reference``, else no defence; a row that is
        another's reference is its own (the no-defence row of its engine)."""
        own = {m.reference for m in self.methods if m.reference}
        return {m.name: m.name if m.name in own else m.reference or self.reference.name
                for m in self.methods}


def parse_bench_config(data: Any, *, source: str = "<bench config>") -> BenchConfig:
    """Validate parsed YAML; raises ConfigError naming ``source`` and each bad field."""
    config = validate_mapping(BenchConfig, data, source)
    from benchmarks.harness.methods import METHOD_KINDS

    for index, method in enumerate(config.methods):
        if method.kind not in METHOD_KINDS:
            raise ConfigError(f"{source}: methods.{index}.kind: unknown kind {method.kind!r} "
                              f"(known: {', '.join(METHOD_KINDS.names())})")
    return config


def load_bench_config(path: str | os.PathLike[str]) -> BenchConfig:
    """Read, ``${ENV}``-substitute and validate a bench YAML file."""
    return parse_bench_config(read_yaml(path, "bench config"), source=str(Path(path)))
