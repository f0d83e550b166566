"""Guards that enforce forget policies, and the registry that builds them from YAML ``type``.

Each entry of :data:`GUARD_BUILDERS` is a function ``build(cfg, artifacts) -> guard`` taking
the method's config model and the policy's :class:`filters.artifacts.PolicyArtifacts`; entries
are lazy ``"module:attr"`` references so importing this package loads neither torch nor FAISS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.core.registry import Registry

GuardBuilder = Callable[[Any, Any], Any]

GUARD_BUILDERS: Registry[GuardBuilder] = Registry("guard")
GUARD_BUILDERS.register("input_classifier", "filters.input_classifier:build_input_classifier")
GUARD_BUILDERS.register("input_detector", "filters.input_detector:build_input_detector")
GUARD_BUILDERS.register("scope", "filters.scope:build_scope")
GUARD_BUILDERS.register("output_filter", "filters.output_filter:build_output_filter")

__all__ = ["GUARD_BUILDERS", "GuardBuilder"]
