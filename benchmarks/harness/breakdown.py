"""Rows per probe level and attack type, where a dataset's probes carry them.

RWKU's forget probes have levels 1-3 (cloze, question, adversarial) and its level-3 probes an
attack ``type`` (prefix injection, role play, …); its neighbour probes levels 1-2. A variant's
scored probes are grouped by level — ``level 1`` holds the forget *and* neighbour probes of
level 1 — and, within a level whose probes have more than one type, by type as well
(``level 3 · role play``). Each group is scored with the same function as the whole row
(:func:`benchmarks.harness.scoring.score_outcomes`). Probes without a level (TOFU) form no
group, and a dataset with only one group gets none (it would repeat the row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmarks.datasets import Probe, ProbeKind
from benchmarks.harness.policies import KINDS
from benchmarks.harness.runner import Outcome
from benchmarks.harness.scoring import Row, score_outcomes

__all__ = ["Groups", "group_rows", "probe_groups"]

_SEP = " · "


def _level_key(level: str) -> tuple[int, str]:
    return (int(level), level) if level.isdigit() else (1 << 30, level)


Groups = dict[str, dict[ProbeKind, list[Probe]]]


def probe_groups(scored: Mapping[ProbeKind, Sequence[Probe]]) -> Groups:
    """Group name -> the scored probes of that group by kind (see the module docstring), levels
    in numeric order, each level followed by its types in first-seen order."""
    probes = [p for kind in KINDS for p in scored.get(kind, ()) if p.level is not None]
    levels = sorted({p.level for p in probes if p.level is not None}, key=_level_key)
    groups: dict[str, list[Probe]] = {}
    for level in levels:
        mine = [p for p in probes if p.level == level]
        groups[f"level {level}"] = mine
        types = list(dict.fromkeys(p.type for p in mine if p.type))
        if len(types) > 1:
            for kind_of_attack in types:
                groups[f"level {level}{_SEP}{kind_of_attack}"] = [
                    p for p in mine if p.type == kind_of_attack]
    if len(groups) < 2:
        return {}
    return {name: {kind: [p for p in members if p.kind == kind] for kind in KINDS}
            for name, members in groups.items()}


def group_rows(row: Row, scored: Mapping[ProbeKind, Sequence[Probe]],
               outcomes: Mapping[str, Outcome], *, detect: bool, refusal_text: str) -> list[Row]:
    """One row per group of ``row``'s scored probes, scored from the same ``outcomes``."""
    rows = []
    for name, probes in probe_groups(scored).items():
        sub = Row(row.dataset, row.method, row.label, row.knob, row.value, group=name)
        score_outcomes(sub, probes, outcomes, detect=detect, refusal_text=refusal_text)
        rows.append(sub)
    return rows
