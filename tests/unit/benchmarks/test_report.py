"""report.json/.md/.html: rates with Wilson intervals, rows per group, the exclusion counts and
the matched-utility parts, from a hand-built dataset result (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.datasets import Benchmark, ForgetTarget, Probe, ProbeKind
from benchmarks.harness.config import DatasetSpec, parse_bench_config
from benchmarks.harness.evaluate import DatasetResult
from benchmarks.harness.hygiene import exclude_naming_targets
from benchmarks.harness.policies import ProbeSplit
from benchmarks.harness.report import build_report, render_html, render_markdown, write_report
from benchmarks.harness.scoring import Row
from benchmarks.metrics.base import MetricResult

CONFIG = parse_bench_config({
    "name": "t", "model": {"backend": "llama_cpp"},
    "datasets": [{"name": "rwku", "mode": "detect", "known_min_rouge": None}],
    "methods": [{"name": "none"}, {"name": "det", "policy": [{"type": "input_detector"}],
                                   "knob": "input_detector.threshold", "values": [0.7]}]})
PROVENANCE = {"started_utc": "s", "ended_utc": "e", "wall_time_s": 1.0, "git_commit": "abc",
              "git_dirty": False, "engine": "llama_cpp", "model": {"name": "m"}, "seed": 0,
              "transport": "in_process"}


def _rate(row: Row, name: str, per_item: list[float]) -> None:
    row.add(name, MetricResult(sum(per_item) / len(per_item), per_item, "T", False, "mean"))


def _row(label: str, forget: list[float], neighbour: list[float],
         group: str | None = None) -> Row:
    method = label.partition("@")[0]
    row = Row("rwku", method, label, None, None, group=group)
    _rate(row, "forget_blocked", forget)
    _rate(row, "neighbour_blocked", neighbour)
    row.add("added_ms", MetricResult(2.5, [2.5], "T", False, "mean"))
    return row


def _result() -> DatasetResult:
    lee = ForgetTarget(id="lee", name="Bruce Lee")
    norris = ForgetTarget(id="cn", name="Chuck Norris")
    probes: dict[ProbeKind, tuple[Probe, ...]] = {
        "forget": (Probe("f", "Who was Bruce Lee?", "actor", "forget"),),
        "neighbour": (Probe("n1", "Who founded Chun Kuk Do?", "Chuck Norris", "neighbour"),
                      Probe("n2", "Who directed Enter the Dragon?", "Robert Clouse", "neighbour")),
        "retain": (), "utility": ()}
    benchmark = Benchmark("rwku", (lee, norris))
    split = ProbeSplit({k: () for k in probes}, probes)
    exclusion = exclude_naming_targets(probes, benchmark.targets)
    rows = [_row("none", [0.0] * 10, [0.0] * 10),
            _row("det@0.7", [1.0] * 8 + [0.0] * 2, [0.0] * 9 + [1.0])]
    groups = [_row("det@0.7", [1.0] * 4 + [0.0], [0.0] * 5, group="level 1")]
    return DatasetResult(DatasetSpec(name="rwku", mode="detect", known_min_rouge=None),
                         benchmark, split, {k: list(v) for k, v in exclusion.kept.items()},
                         rows, exclusion=exclusion, groups=groups)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str]:
    out = tmp_path_factory.mktemp("report")
    report = build_report([_result()], CONFIG, out, PROVENANCE)
    write_report(report, [], out)
    return (json.loads((out / "report.json").read_text(encoding="utf-8")),
            (out / "report.md").read_text(encoding="utf-8"),
            (out / "report.html").read_text(encoding="utf-8"))


def test_rates_carry_their_wilson_interval(written: tuple[dict[str, Any], str, str]) -> None:
    report, markdown, page = written
    det = report["datasets"][0]["rows"][1]["metrics"]
    assert det["forget_blocked"]["ci95"] == pytest.approx([0.4902, 0.9433], abs=5e-5)
    assert det["neighbour_blocked"]["ci95"] == pytest.approx([0.0179, 0.4042], abs=5e-5)
    assert det["added_ms"]["ci95"] is None  # not a rate
    # 8/10 detected, 1/10 flagged: values with their intervals, latency without
    assert "| det@0.7 | – | 80.0 [49.0, 94.3] | 10.0 [1.8, 40.4] | 2.5 |" in markdown
    assert "80.0 [49.0, 94.3]" in page and "Wilson 95 %" in markdown


def test_matched_table_shows_the_utility_parts(written: tuple[dict[str, Any], str, str]) -> None:
    _, markdown, _ = written
    # detect mode: no ROUGE; answer rate = utility = 1 - 0.1; efficacy 8/10 with its interval
    assert "| det | det@0.7 | no | – | 90.0 | 90.0 | 80.0 [49.0, 94.3] |" in markdown
    assert "| ROUGE utility ↑ | Answer rate ↑ | Utility ↑ |" in markdown


def test_groups_and_exclusions_are_reported(written: tuple[dict[str, Any], str, str]) -> None:
    report, markdown, page = written
    entry = report["datasets"][0]
    assert entry["sizes"]["excluded"]["neighbour"] == {"candidates": 2, "excluded": 1}
    assert entry["sizes"]["excluded_ids"]["neighbour"] == {"n1": ["cn"]}
    assert "neighbour 1 of 2" in markdown and "naming a forget target" in page
    assert entry["groups"][0]["group"] == "level 1"
    assert "| level 1 | det@0.7 | 80.0 [37.6, 96.4] | 0.0 [0.0, 43.4] | 2.5 |" in markdown
    assert "By level and attack type" in page


def test_a_dataset_without_groups_has_no_group_table(tmp_path: Path) -> None:
    result = _result()
    result.groups = []
    report = build_report([result], CONFIG, tmp_path, PROVENANCE)
    assert "By level and attack type" not in render_markdown(report)
    assert "By level and attack type" not in render_html(report, tmp_path)
