"""The gateway benchmark's figures: added latency paired by round, client caps, LiteLLM ratios."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from benchmarks.gateways import ROWS, Row, ratios, render_markdown, summarise
from benchmarks.targets import proxy_config


def _load(rps: float, cpu: float = 0.5) -> dict[str, float]:
    return {"rps": rps, "p50_ms": 10.0, "p99_ms": 20.0, "errors": 0, "client_cpu_share": cpu}


ROW_LIST = [Row("direct"), Row("direct", True), Row("proxy"), Row("proxy+policy"),
            Row("litellm"), Row("proxy", True), Row("litellm", True)]
TIMES = {"direct": [1.0, 2.0, 1.0], "direct (stream)": [2.0, 2.0, 2.0],
         "proxy": [1.5, 3.0, 1.4], "proxy+policy": [8.0, 9.0, 8.0], "litellm": [14.0, 15.0, 13.0],
         "proxy (stream)": [3.0, 3.0, 3.0], "litellm (stream)": [22.0, 22.0, 22.0]}
LOAD = {"direct": _load(250), "direct (stream)": _load(200), "proxy": _load(230),
        "proxy+policy": _load(140), "litellm": _load(80, cpu=0.2),
        "proxy (stream)": _load(150, cpu=0.95), "litellm (stream)": _load(60)}


def test_added_latency_is_paired_by_round_and_capped_rates_are_marked() -> None:
    summary = summarise(TIMES, LOAD, ROW_LIST)
    assert summary["proxy"]["added_ms"]["p50"] == pytest.approx(0.5)  # 0.5, 1.0, 0.4
    assert summary["litellm (stream)"]["added_ms"]["p50"] == pytest.approx(20.0)
    assert summary["proxy"]["capped_by_client"]  # 230 >= 0.9 x 250 direct
    assert summary["proxy (stream)"]["capped_by_client"]  # the client was 95 % busy
    assert not summary["proxy+policy"]["capped_by_client"] and not summary["direct"]["capped_by_client"]
    assert ratios(summary) == pytest.approx({
        "litellm_added_p50_over_proxy_json": 13.0 / 0.5, "proxy_rps_over_litellm_json": 230 / 80,
        "litellm_added_p50_over_proxy_stream": 20.0 / 1.0, "proxy_rps_over_litellm_stream": 150 / 60})


def test_the_table_says_which_rates_the_client_capped() -> None:
    summary = summarise(TIMES, LOAD, ROW_LIST)
    report: dict[str, Any] = {
        "results": {"rows": summary, "ratios": ratios(summary)},
        "provenance": {"command": "python -m benchmarks.gateways", "git_commit": "abc",
                       "git_dirty": False, "started_utc": "t", "wall_time_s": 1.0,
                       "host": {"cpus": 2}, "requests": 3, "concurrency": 32, "seconds": 8.0,
                       "litellm_version": "1.0"}}
    markdown = render_markdown(report)
    assert "| proxy | 1.50 | 0.50 |" in markdown and "| 230 *capped* |" in markdown
    assert "| proxy+policy | 8.00 | 7.00 |" in markdown and "| 140 | 20.0 |" in markdown
    assert "litellm added p50 over proxy json 26.0×" in markdown


def test_every_row_is_a_known_target(tmp_path: Any) -> None:
    for row in ROWS:
        if row.gateway != "direct":
            assert proxy_config(tmp_path, "http://up", row.gateway).is_file()
    with pytest.raises(ValueError, match="unknown target"):
        proxy_config(tmp_path, "http://up", "proxy+polcy")
    with pytest.raises(ValueError, match="unknown target"):
        proxy_config(tmp_path, "http://up", "proxy+torch")  # an option needs the policy


def test_the_scope_option_replaces_the_input_methods(tmp_path: Any) -> None:
    def methods(target: str) -> list[str]:
        data = yaml.safe_load(proxy_config(tmp_path, "http://up", target).read_text())
        return [m["type"] for m in data["policies"]["full"]["methods"]]

    assert methods("proxy+policy") == ["input_detector", "input_classifier"]
    assert methods("proxy+policy+scope") == ["scope"]
    assert methods("proxy+policy+scope+output") == ["scope", "output_filter"]
