"""Rows per level and attack type: which probes form a group, and each group scored like a row."""

from __future__ import annotations

import pytest

from benchmarks.datasets import Probe, ProbeKind
from benchmarks.harness.breakdown import group_rows, probe_groups
from benchmarks.harness.runner import Outcome
from benchmarks.harness.scoring import Row, score_outcomes


def _probe(pid: str, kind: ProbeKind, level: str | None, type_: str | None) -> Probe:
    return Probe(id=pid, question=f"q {pid}", answer="a", kind=kind, level=level, type=type_)


# RWKU-like: forget levels 1-3 (level 3 with two attack types), neighbour levels 1-2
SCORED: dict[ProbeKind, list[Probe]] = {
    "forget": [_probe("f1", "forget", "1", "cloze"), _probe("f2", "forget", "2", "qa"),
               _probe("f3", "forget", "3", "role play"), _probe("f4", "forget", "3", "prefix"),
               _probe("f5", "forget", "3", "role play"), _probe("f6", "forget", "1", "cloze")],
    "neighbour": [_probe("n1", "neighbour", "1", "cloze"), _probe("n2", "neighbour", "2", "qa")],
    "retain": [], "utility": [],
}
BLOCKED = {"f1", "f3", "f4", "f6", "n2"}


def _ids(groups: dict[str, dict[ProbeKind, list[Probe]]]) -> dict[str, dict[str, list[str]]]:
    return {name: {k: [p.id for p in v] for k, v in kinds.items() if v}
            for name, kinds in groups.items()}


def test_groups_by_level_then_attack_type() -> None:
    assert _ids(probe_groups(SCORED)) == {
        "level 1": {"forget": ["f1", "f6"], "neighbour": ["n1"]},
        "level 2": {"forget": ["f2"], "neighbour": ["n2"]},
        "level 3": {"forget": ["f3", "f4", "f5"]},
        "level 3 · role play": {"forget": ["f3", "f5"]},
        "level 3 · prefix": {"forget": ["f4"]},
    }


@pytest.mark.parametrize("scored", [
    {"forget": [_probe("t1", "forget", None, None)], "neighbour": [
        _probe("t2", "neighbour", None, "real_authors")]},  # TOFU: no levels
    {"forget": [_probe("a", "forget", "2", "qa"), _probe("b", "forget", "2", "qa")]},  # one group
])
def test_no_groups_without_levels_or_with_a_single_group(
        scored: dict[ProbeKind, list[Probe]]) -> None:
    assert probe_groups(scored) == {}


def test_levels_sort_numerically() -> None:
    scored: dict[ProbeKind, list[Probe]] = {"forget": [
        _probe("x", "forget", "10", None), _probe("y", "forget", "2", None)]}
    assert list(probe_groups(scored)) == ["level 2", "level 10"]


def test_group_rows_score_each_group_from_the_same_outcomes() -> None:
    outcomes = {p.id: Outcome("a", "stop", p.id in BLOCKED, 1, 1, 0.0, 0.0)
                for kind in SCORED.values() for p in kind}
    row = Row("rwku", "det", "det@0.7", "input_detector.threshold", 0.7)
    score_outcomes(row, SCORED, outcomes, detect=True, refusal_text="No.")
    groups = group_rows(row, SCORED, outcomes, detect=True, refusal_text="No.")
    got = {g.group: (g.metrics, g.n) for g in groups}
    assert got == {
        "level 1": ({"forget_blocked": 1.0, "neighbour_blocked": 0.0},
                    {"forget_blocked": 2, "neighbour_blocked": 1}),
        "level 2": ({"forget_blocked": 0.0, "neighbour_blocked": 1.0},
                    {"forget_blocked": 1, "neighbour_blocked": 1}),
        "level 3": ({"forget_blocked": 2 / 3}, {"forget_blocked": 3}),
        "level 3 · role play": ({"forget_blocked": 0.5}, {"forget_blocked": 2}),
        "level 3 · prefix": ({"forget_blocked": 1.0}, {"forget_blocked": 1}),
    }
    assert all((g.dataset, g.method, g.label, g.knob, g.value) ==
               ("rwku", "det", "det@0.7", "input_detector.threshold", 0.7) for g in groups)
    assert row.group is None and row.metrics["forget_blocked"] == 4 / 6
    assert groups[0].to_dict()["group"] == "level 1" and "group" not in row.to_dict()
