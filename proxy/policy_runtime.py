"""A policy made runnable: its guards (``filters/``) and context builders (``icul/``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filters.base import InputGuard, OutputGuard
from icul.prefix import apply_chat_prefix, apply_completion_prefix, render_prefix
from proxy.config import ForgetTargetConfig, PolicyConfig, PrefixConfig
from proxy.pipeline import Request

GUARD_METHODS = ("input_detector", "input_classifier", "output_filter")


@dataclass
class CompiledRuntimePolicy:
    """Implements :class:`proxy.pipeline.PolicyRuntime` for one policy."""

    name: str
    config: PolicyConfig
    input_guards: list[InputGuard] = field(default_factory=list)
    output_guards: list[OutputGuard] = field(default_factory=list)
    compiled: Any = None

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.config.forget]

    def build_context(self, request: Request, *, detected: bool) -> tuple[Request, int]:
        """Apply the policy's prefix/ICUL methods in config order."""
        added = 0
        for method in self.config.methods:
            if isinstance(method, PrefixConfig) and (method.when == "always" or detected):
                request, tokens = self._with_prefix(request, method)
                added += tokens
        return request, added

    def _with_prefix(self, request: Request, method: PrefixConfig) -> tuple[Request, int]:
        prefix = render_prefix(self.target_names, method.template)
        if request.kind == "chat":
            return replace(request, messages=apply_chat_prefix(request.messages, prefix)), 0
        return replace(request, prompt=apply_completion_prefix(request.prompt or "", prefix)), 0

    def describe(self) -> list[str]:
        """Lines for ``check-config``: targets, methods, calibration."""
        lines = [f"forget targets: {len(self.config.forget)}; retain examples: {len(self.config.retain)}"]
        lines.append("methods: " + ", ".join(m.type for m in self.config.methods) or "(none)")
        if self.compiled is not None and hasattr(self.compiled, "describe"):
            lines.extend(self.compiled.describe())
        return lines


def merged_policy(policy: PolicyConfig, extra_targets: list[ForgetTargetConfig]) -> PolicyConfig:
    """The policy with runtime forget requests appended to its forget list."""
    if not extra_targets:
        return policy
    return policy.model_copy(update={"forget": [*policy.forget, *extra_targets]})


def compile_runtime_policy(
    name: str,
    policy: PolicyConfig,
    *,
    base_dir: Path,
    state_dir: Path,
    extra_targets: list[ForgetTargetConfig] | None = None,
) -> CompiledRuntimePolicy:
    """Build guards and context builders for ``policy`` (cached artefacts under ``state_dir``)."""
    merged = merged_policy(policy, list(extra_targets or []))
    runtime = CompiledRuntimePolicy(name, merged)
    if any(m.type in GUARD_METHODS for m in merged.methods):
        from filters.compiled import compile_policy

        compiled = compile_policy(
            name, merged, base_dir=base_dir, cache_dir=state_dir / "artefacts"
        )
        runtime.compiled = compiled
        runtime.input_guards = list(compiled.input_guards)
        runtime.output_guards = list(compiled.output_guards)
    return runtime
