"""`benchmarks/configs/scope.yaml` (`make bench-scope`, issue 17): what it runs, the dataset
labels that let TOFU appear once per split, and TOFU's paraphrased forget questions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from benchmarks.datasets.tofu import load_tofu
from benchmarks.errors import DatasetError
from benchmarks.harness.config import load_bench_config, parse_bench_config
from benchmarks.processes import REPO
from proxy.core.config import OutputFilterConfig, ScopeConfig
from proxy.core.errors import ConfigError

SCOPE = REPO / "benchmarks" / "configs" / "scope.yaml"


def test_scope_config_is_the_issue_setup() -> None:
    config = load_bench_config(SCOPE)
    rwku, *tofu = config.datasets
    assert (rwku.name, rwku.mode) == ("rwku", "detect")
    assert rwku.loader["target_ids"] == list(range(1, 41))
    assert (rwku.candidates.forget, rwku.candidates.neighbour) == (1200, 1200)
    assert (rwku.known_min_rouge, rwku.holdout_share, rwku.max_documents) == (None, 0.25, 20)
    assert [(d.key, d.mode, d.loader) for d in tofu] == [
        (f"tofu-{split}", "detect", {"split": split, "forget_questions": "paraphrased"})
        for split in ("forget01", "forget05", "forget10")]
    assert [m.name for m in config.methods] == [
        "none", "scope+output_filter", "scope", "scope_sweep", "scope_without_classifier",
        "input_detector", "input_classifier", "input_detector+input_classifier", "output_filter"]
    # the recommended stack and the scope check alone, both at the defaults as shipped
    assert config.methods[1].policy == [ScopeConfig(type="scope"),
                                        OutputFilterConfig(type="output_filter")]
    assert config.methods[2].policy == [ScopeConfig(type="scope")]
    assert config.methods[5].values == [0.55, 0.62, 0.7, 0.8]


def test_make_bench_scope_runs_it() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony and "bench-scope" in phony.group(1).split()
    assert re.search(r"^bench-scope:.*\n\t.*bench --config benchmarks/configs/scope\.yaml$",
                     makefile, re.M)


def _config(*datasets: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "model": {"backend": "llama_cpp"}, "datasets": list(datasets),
            "methods": [{"name": "none"}]}


def test_a_benchmark_twice_needs_distinct_labels() -> None:
    one, two = {"name": "tofu", "loader": {"split": "forget01"}}, {"name": "tofu"}
    with pytest.raises(ConfigError, match="tofu listed twice; give each a distinct `label`"):
        parse_bench_config(_config(one, two))
    config = parse_bench_config(_config({**one, "label": "tofu-1"}, two))
    assert [d.key for d in config.datasets] == ["tofu-1", "tofu"]
    with pytest.raises(ConfigError, match="label"):
        parse_bench_config(_config({**one, "label": "has space"}))


def test_tofu_paraphrased_forget_questions() -> None:
    plain = load_tofu(split="forget01")
    para = load_tofu(split="forget01", forget_questions="paraphrased")
    assert len(para.forget_probes) == len(plain.forget_probes) == 40
    for p, q in zip(plain.forget_probes, para.forget_probes, strict=True):
        assert (q.question, q.answer) == (p.paraphrased_question, p.paraphrased_answer)
        assert q.question != p.question and q.target_id == p.target_id
        assert q.id == p.id.replace("forget01/", "forget01/paraphrased/")
    assert para.targets == plain.targets and para.retain_probes == plain.retain_probes
    assert para.params["forget_questions"] == "paraphrased"
    with pytest.raises(DatasetError, match="forget_questions"):
        load_tofu(split="forget01", forget_questions="reworded")  # type: ignore[arg-type]
