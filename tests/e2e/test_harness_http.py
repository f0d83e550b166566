"""In-process = HTTP: the harness gives identical numbers through a real `unlearn-proxy serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.harness import parse_bench_config, run_bench
from benchmarks.processes import REPO

# Cost metrics are measured differently on each side (engine time vs the proxy's header).
_COST = {"added_ms"}


def _config(transport: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (REPO / "benchmarks" / "configs" / "smoke.yaml").read_text("utf-8"))
    rwku = data["datasets"][0]
    rwku.update(loader={"target_ids": [1]}, candidates={"forget": 4, "neighbour": 4, "utility": 2})
    data.update(name=f"http-identity-{transport}", transport=transport, datasets=[rwku])
    return data


def _numbers(report: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(report.read_text(encoding="utf-8"))["datasets"][0]["rows"]
    return {r["label"]: {k: (m["value"], m["n"]) for k, m in r["metrics"].items()
                         if k not in _COST} for r in rows}


def _matched(out: Path) -> tuple[Any, ...]:
    """The matched-utility choice: as data, as the report's table and as rendered markdown."""
    dataset = json.loads((out / "report.json").read_text(encoding="utf-8"))["datasets"][0]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    section = markdown.split("At matched utility", 1)[1].split("![trade-off]", 1)[0]
    flags = [(r["label"], r["matched_utility"]) for r in dataset["rows"]]
    return dataset["matched_utility"], dataset["tables"]["matched"], section, flags


def _texts(out: Path) -> list[tuple[str, str, str, bool]]:
    items = [json.loads(line) for line in (out / "items.jsonl").open(encoding="utf-8")]
    return [(i["variant"], i["probe_id"], i["text"], i["blocked"]) for i in items]


@pytest.mark.slow
def test_in_process_and_http_give_identical_numbers(tmp_path: Path) -> None:
    outs = {}
    for transport in ("in_process", "http"):
        config = parse_bench_config(_config(transport), source=transport)
        outs[transport] = tmp_path / transport
        run_bench(config, out_dir=outs[transport])
    local, remote = (_numbers(outs[t] / "report.json") for t in ("in_process", "http"))
    assert list(local) == ["none", "prefix", "input_detector@0.45", "input_detector@0.7",
                           "output_filter"]
    assert local == remote
    matched = _matched(outs["in_process"])
    assert [m["method"] for m in matched[0]] == ["none", "prefix", "input_detector",
                                                 "output_filter"]
    assert "| input_detector | input_detector@" in matched[2]
    assert matched == _matched(outs["http"])
    assert _texts(outs["in_process"]) == _texts(outs["http"])
