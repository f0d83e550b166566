"""A policy made runnable: the one compiled-policy object and the one way to compile it.

:func:`compile_policy` merges the forget requests and retain removals made at run time into
the configured policy (validated like a config file: duplicate ids or no target left are a
ConfigError), builds its guards (:data:`filters.GUARD_BUILDERS`, on lazily built
:class:`filters.artifacts.PolicyArtifacts`) and its context methods
(:data:`icul.CONTEXT_BUILDERS`), and returns a :class:`CompiledPolicy`: what the pipeline runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from filters.artifacts import PolicyArtifacts, build_guards
from filters.base import InputGuard, OutputGuard, Verdict
from filters.embedder import build_embedder
from filters.negatives import CalibrationReport
from icul import CONTEXT_BUILDERS, ContextMethod
from icul.context import ICULMethod
from proxy.core.config import ForgetTargetConfig, PolicyConfig, format_validation_error
from proxy.core.errors import ConfigError
from proxy.core.messages import Message

TokenCounter = Callable[[str], int]


@dataclass
class FlagOnly:
    """An input guard whose blocks only *flag* the request (for ``when: detected`` methods)."""

    inner: InputGuard

    @property
    def name(self) -> str:
        return self.inner.name

    def check_input(self, messages: Sequence[Message]) -> Verdict:
        verdict = self.inner.check_input(messages)
        return replace(verdict, action="rewrite") if verdict.is_block else verdict


@dataclass
class CompiledPolicy:
    """A policy ready to run: its (merged) config, guards and context methods.

    ``guards`` pairs each guard method's config with its guard, in config order (set at
    compile time, never changed: the guard lists derived from it are computed once);
    ``input_guards`` run cheapest first (``action: flag`` ones only flag); ``context`` holds the
    context methods in config order.
    """

    name: str
    config: PolicyConfig
    guards: list[tuple[Any, Any]] = field(default_factory=list)
    context: list[ContextMethod] = field(default_factory=list)
    compile_s: float = 0.0
    cache_hits: dict[str, bool] = field(default_factory=dict)

    @cached_property
    def input_guards(self) -> list[InputGuard]:
        """Input guards, cheapest first; those of ``action: flag`` methods only flag."""
        ranked = sorted(((cfg, g) for cfg, g in self.guards if isinstance(g, InputGuard)),
                        key=lambda pair: getattr(pair[1], "cost_rank", 0))
        return [FlagOnly(g) if getattr(cfg, "action", "block") == "flag" else g
                for cfg, g in ranked]

    @cached_property
    def output_guards(self) -> list[OutputGuard]:
        return [g for _, g in self.guards if isinstance(g, OutputGuard)]

    def release_limit(self, text: str) -> int:
        """How much of a stream's ``text`` so far may reach the client: what every output guard
        releases (all of it without output guards)."""
        return min((g.release_limit(text) for g in self.output_guards), default=len(text))

    @property
    def calibration(self) -> dict[str, CalibrationReport]:
        """Calibration reports of the calibrated guards (classifier, scope), keyed ``methods[i]``."""
        where = {id(cfg): i for i, cfg in enumerate(self.config.methods)}
        return {
            f"methods[{where[id(cfg)]}]": guard.report
            for cfg, guard in self.guards
            if isinstance(getattr(guard, "report", None), CalibrationReport)
        }

    @property
    def icul(self) -> list[ICULMethod]:
        return [m for m in self.context if isinstance(m, ICULMethod)]

    def build_context(self, request: Any, *, detected: bool,
                      count_tokens: TokenCounter) -> tuple[Any, int]:
        """``request`` (a :class:`proxy.pipeline.Request`) with the context methods applied in
        config order (``when: detected`` ones only when an input guard flagged it), and the
        prompt tokens they added."""
        added = 0
        for method in self.context:
            if method.when == "detected" and not detected:
                continue
            if request.kind == "chat":
                messages, tokens = method.apply_chat(request.messages, count_tokens)
                request = replace(request, messages=messages)
            else:
                prompt, tokens = method.apply_completion(request.prompt or "", count_tokens)
                request = replace(request, prompt=prompt)
            added += tokens
        return request, added

    def has_retain(self, question: str) -> bool:
        """Whether ``question`` is in one of the ICUL pools."""
        return any(icul.has_retain(question) for icul in self.icul)

    def remove_retain(self, question: str) -> list[bool]:
        """Delete a retain example from every ICUL pool that has it; whether each recomputed."""
        return [icul.remove_retain(question) if icul.has_retain(question) else False
                for icul in self.icul]

    def describe(self) -> list[str]:
        """Lines for ``check-config``: targets, methods, guards, cache use, calibration and the
        ICUL demonstrations."""
        methods = ", ".join(m.type for m in self.config.methods) or "(none)"
        lines = [
            f"forget targets: {len(self.config.forget)}; retain examples: {len(self.config.retain)}",
            f"methods: {methods}",
        ]
        if self.guards:
            inputs = ", ".join(repr(g) for g in self.input_guards) or "(none)"
            lines.append(f"guards (cheapest first): {inputs}")
            if self.output_guards:
                lines.append(f"output guards: {', '.join(map(repr, self.output_guards))}")
            cached = ", ".join(f"{k}={'hit' if v else 'built'}" for k, v in self.cache_hits.items())
            lines.append(f"compiled in {self.compile_s:.1f}s ({cached or 'nothing to build'})")
            types = {f"methods[{i}]": m.type for i, m in enumerate(self.config.methods)}
            lines += [f"{where} {types[where]}: {report.summary()}"
                      for where, report in self.calibration.items()]
        for icul in self.icul:
            lines.extend(icul.describe())
        return lines


def merged_policy(
    policy: PolicyConfig,
    extra_targets: Sequence[ForgetTargetConfig] = (),
    removed_retain: Sequence[str] = (),
    *,
    name: str = "policy",
) -> PolicyConfig:
    """``policy`` with forget requests added and removed retain examples dropped, validated as
    a config file is (a duplicate target id is a ConfigError naming ``name``)."""
    if not extra_targets and not removed_retain:
        return policy
    removed = {q.strip() for q in removed_retain}
    data = {**dict(policy), "forget": [*policy.forget, *extra_targets],
            "retain": [r for r in policy.retain if r.question.strip() not in removed]}
    try:
        return PolicyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"policies.{name}", exc)) from None


def compile_policy(
    name: str,
    policy: PolicyConfig,
    *,
    base_dir: Path,
    state_dir: Path,
    extra_targets: Sequence[ForgetTargetConfig] = (),
    removed_retain: Sequence[str] = (),
    progress: bool = True,
) -> CompiledPolicy:
    """Merge run-time forget requests and retain removals into ``policy``, then build its guards
    and context methods (artefacts cached under ``state_dir/artefacts``).

    Raises:
        ConfigError: a duplicate target id, an unusable embedder or method.
    """
    started = time.perf_counter()
    merged = merged_policy(policy, extra_targets, removed_retain, name=name)

    @cache
    def artifacts() -> PolicyArtifacts:
        return PolicyArtifacts(merged.forget, merged.retain, build_embedder(merged.embedder),
                               base_dir=base_dir, cache_dir=state_dir / "artefacts",
                               progress=progress)

    context = [
        CONTEXT_BUILDERS.get(cfg.type)(cfg, policy=merged, where=f"policies.{name}.methods.{i}",
                                       artifacts=artifacts)
        for i, cfg in enumerate(merged.methods) if cfg.type in CONTEXT_BUILDERS
    ]
    guards = build_guards(merged.methods, artifacts()) if _has_guards(merged) else []
    built = artifacts.cache_info().currsize > 0
    elapsed = time.perf_counter() - started
    hits = dict(artifacts().cache_hits) if built else {}
    if built and progress:
        print(f"[unlearn-proxy] policy {name!r} compiled in {elapsed:.1f}s (cache: {hits})",
              file=sys.stderr, flush=True)
    return CompiledPolicy(name, merged, guards, context, compile_s=elapsed, cache_hits=hits)


def _has_guards(policy: PolicyConfig) -> bool:
    from filters import GUARD_BUILDERS

    return any(cfg.type in GUARD_BUILDERS for cfg in policy.methods)
