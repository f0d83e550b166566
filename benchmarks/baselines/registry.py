"""The ``unlearning method`` registry: alias (= module name, = YAML ``type:``) -> method class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.core.registry import Registry

if TYPE_CHECKING:
    from benchmarks.baselines.base import UnlearningMethod

METHODS: Registry[type[UnlearningMethod]] = Registry("unlearning method")
for _alias, _cls in {
    "ga": "GradAscent",
    "grad_diff": "GradDiff",
    "npo": "NPO",
    "simnpo": "SimNPO",
    "idk_dpo": "IdkDPO",
    "rmu": "RMU",
}.items():
    METHODS.register(_alias, f"benchmarks.baselines.{_alias}:{_cls}")
