"""A policy made runnable: its guards (``filters/``) and context builders (``icul/``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filters.base import InputGuard, OutputGuard, Verdict, user_turns
from icul.context import ICULMethod
from icul.prefix import apply_chat_prefix, apply_completion_prefix, render_prefix
from proxy.core.config import ForgetTargetConfig, ICULConfig, PolicyConfig, PrefixConfig
from proxy.pipeline import Request

GUARD_METHODS = ("input_detector", "input_classifier", "output_filter")
TokenCounter = Callable[[str], int]


@dataclass
class FlagOnly:
    """An input guard whose blocks only *flag* the request (for ``when: detected`` methods)."""

    inner: InputGuard

    @property
    def name(self) -> str:
        return self.inner.name

    def check_input(self, messages: Sequence[dict[str, Any]]) -> Verdict:
        verdict = self.inner.check_input(messages)
        return replace(verdict, action="rewrite") if verdict.is_block else verdict


@dataclass
class CompiledRuntimePolicy:
    """Implements :class:`proxy.pipeline.PolicyRuntime` for one policy."""

    name: str
    config: PolicyConfig
    input_guards: list[InputGuard] = field(default_factory=list)
    output_guards: list[OutputGuard] = field(default_factory=list)
    icul: list[ICULMethod] = field(default_factory=list)
    compiled: Any = None

    def build_context(
        self, request: Request, *, detected: bool, count_tokens: TokenCounter
    ) -> tuple[Request, int]:
        """Apply the policy's prefix/ICUL methods in config order; returns tokens added."""
        added = 0
        icul_methods = iter(self.icul)
        for method in self.config.methods:
            if isinstance(method, ICULConfig):
                icul = next(icul_methods)
                if method.when == "always" or detected:
                    request, tokens = self._with_icul(request, icul, count_tokens)
                    added += tokens
            elif isinstance(method, PrefixConfig) and (method.when == "always" or detected):
                request, tokens = self._with_prefix(request, method, count_tokens)
                added += tokens
        return request, added

    def _with_prefix(
        self, request: Request, method: PrefixConfig, count_tokens: TokenCounter
    ) -> tuple[Request, int]:
        prefix = render_prefix([t.name for t in self.config.forget], method.template)
        tokens = count_tokens(prefix)
        if request.kind == "chat":
            return replace(request, messages=apply_chat_prefix(request.messages, prefix)), tokens
        return replace(request, prompt=apply_completion_prefix(request.prompt or "", prefix)), tokens

    @staticmethod
    def _with_icul(
        request: Request, icul: ICULMethod, count_tokens: TokenCounter
    ) -> tuple[Request, int]:
        if request.kind == "chat":
            query = (user_turns(request.messages) or [""])[-1]
            messages, tokens = icul.apply_chat(request.messages, query, count_tokens)
            return replace(request, messages=messages), tokens
        prompt, tokens = icul.apply_completion(request.prompt or "", count_tokens)
        return replace(request, prompt=prompt), tokens

    def has_retain(self, question: str) -> bool:
        """Whether ``question`` is in one of the ICUL pools."""
        return any(icul.has_retain(question) for icul in self.icul)

    def remove_retain(self, question: str) -> list[bool]:
        """Delete a retain example from every ICUL pool that has it; whether each recomputed."""
        return [icul.remove_retain(question) if icul.has_retain(question) else False
                for icul in self.icul]

    def describe(self) -> list[str]:
        """Lines for ``check-config``: targets, methods, calibration, demonstrations."""
        methods = ", ".join(m.type for m in self.config.methods) or "(none)"
        lines = [
            f"forget targets: {len(self.config.forget)}; retain examples: {len(self.config.retain)}",
            f"methods: {methods}",
        ]
        if self.compiled is not None:
            lines.extend(self.compiled.describe())
        for icul in self.icul:
            lines.extend(icul.describe())
        return lines


def merged_policy(
    policy: PolicyConfig,
    extra_targets: Sequence[ForgetTargetConfig] = (),
    removed_retain: Sequence[str] = (),
) -> PolicyConfig:
    """The policy with runtime forget requests added and removed retain examples dropped."""
    if not extra_targets and not removed_retain:
        return policy
    removed = {q.strip() for q in removed_retain}
    retain = [r for r in policy.retain if r.question.strip() not in removed]
    return policy.model_copy(update={"forget": [*policy.forget, *extra_targets], "retain": retain})


def compile_runtime_policy(
    name: str,
    policy: PolicyConfig,
    *,
    base_dir: Path,
    state_dir: Path,
    extra_targets: Sequence[ForgetTargetConfig] = (),
    removed_retain: Sequence[str] = (),
) -> CompiledRuntimePolicy:
    """Build guards and context builders for ``policy`` (cached artefacts under ``state_dir``)."""
    merged = merged_policy(policy, extra_targets, removed_retain)
    runtime = CompiledRuntimePolicy(name, merged)
    if not any(m.type in (*GUARD_METHODS, "icul") for m in merged.methods):
        return runtime
    from filters.compiled import compile_policy

    compiled = compile_policy(name, merged, base_dir=base_dir, cache_dir=state_dir / "artefacts")
    runtime.compiled = compiled
    flagged = {id(g) for cfg, g in compiled.guards if getattr(cfg, "action", "block") == "flag"}
    runtime.input_guards = [FlagOnly(g) if id(g) in flagged else g for g in compiled.input_guards]
    runtime.output_guards = list(compiled.output_guards)
    artifacts = compiled.artifacts
    for index, method in enumerate(merged.methods):
        if isinstance(method, ICULConfig):
            runtime.icul.append(ICULMethod(
                method, targets=compiled.targets, retain=merged.retain, index=artifacts.index,
                embedder=artifacts.embedder, refusal_text=merged.refusal_text,
                where=f"policies.{name}.methods.{index}",
            ))
    return runtime
