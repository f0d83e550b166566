"""Method rows as *variants*: one method at one knob value, ready to be deployed.

A variant is data: the policy the proxy applies (``None``: no policy) and the model it serves
(``None``: the bench model). Every kind of method reduces to that, so policies and weight-based
baselines are scored by the same pipeline on the same probes: a baseline variant is "no policy,
the unlearned checkpoint served by the transformers backend", and a ``model`` row is "no policy,
another engine" (the original weights on the baselines' engine: their reference row).
:data:`METHOD_KINDS` maps a ``MethodSpec.kind`` to its ``VariantBuilder`` (``baseline``:
``benchmarks.baselines``, imported on first use).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from benchmarks.datasets import Benchmark
from benchmarks.harness.config import MethodSpec
from proxy.core.config import ModelConfig, PolicyConfig
from proxy.core.errors import ConfigError
from proxy.core.registry import Registry

__all__ = ["METHOD_KINDS", "Variant", "VariantBuilder", "format_value", "model_variants",
           "parse_options", "policy_variants"]


def format_value(value: float | None) -> str:
    """A knob value as written in labels: ``0.6``, ``4``, or empty."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Variant:
    """One method at one knob value."""

    method: str
    knob: str | None
    value: float | None
    policy: PolicyConfig | None
    model: ModelConfig | None = None
    training: dict[str, Any] | None = None  # weight-based rows: wall_s, device, dtype, steps

    @property
    def label(self) -> str:
        """``method`` or ``method@value``."""
        return self.method if self.value is None else f"{self.method}@{format_value(self.value)}"

    @property
    def slug(self) -> str:
        """The label made safe for file names, policy names and API keys."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label.replace("@", "__"))

    def __repr__(self) -> str:
        methods = [m.type for m in self.policy.methods] if self.policy else []
        return f"Variant({self.label!r}, methods={methods}, own_model={self.model is not None})"


VariantBuilder = Callable[[MethodSpec, PolicyConfig, Benchmark], list[Variant]]
"""``(spec, base policy: the dataset's targets and retain examples with no methods, the loaded
benchmark: e.g. its retain documents) -> variants``."""


def parse_options(spec: MethodSpec, schema: Any) -> Any:
    """``spec.options`` validated against ``schema`` (a pydantic model or annotated type);
    the first problem becomes a ConfigError naming the method and the option."""
    try:
        return TypeAdapter(schema).validate_python(spec.options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"method {spec.name!r}: options.{where}: {error['msg']}") from None


def _with_knob(spec: MethodSpec, base: PolicyConfig, value: float | None) -> PolicyConfig:
    kind, _, field = (spec.knob or "").partition(".")
    methods = []
    for method in spec.policy:
        if value is not None and method.type == kind:
            try:
                method = type(method).model_validate({**method.model_dump(), field: value})
            except ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise ConfigError(f"method {spec.name!r}: knob {spec.knob}={value}: {message}") \
                    from None
            kind = ""  # only the first method of that type is swept
        methods.append(method)
    return base.model_copy(update={"methods": methods})


def policy_variants(spec: MethodSpec, base: PolicyConfig, benchmark: Benchmark) -> list[Variant]:
    """A policy method: one variant per knob value (the no-defence row has no policy)."""
    if spec.is_reference:
        return [Variant(spec.name, None, None, None)]
    values: list[float | None] = list(spec.values) or [None]
    return [Variant(spec.name, spec.knob, v, _with_knob(spec, base, v)) for v in values]


def model_variants(spec: MethodSpec, base: PolicyConfig, benchmark: Benchmark) -> list[Variant]:
    """A ``model`` row: no policy, the model its ``options`` configure (a proxy model config,
    e.g. ``{backend: transformers}``), so other engines get their own no-defence row."""
    if spec.knob is not None:
        raise ConfigError(f"method {spec.name!r}: a model row has no knob")
    model: ModelConfig = parse_options(spec, ModelConfig)
    return [Variant(spec.name, None, None, None, model)]


METHOD_KINDS: Registry[VariantBuilder] = Registry("method kind")
METHOD_KINDS.register("policy", policy_variants)
METHOD_KINDS.register("model", model_variants)
METHOD_KINDS.register("baseline", "benchmarks.baselines.harness_plugin:baseline_variants")
