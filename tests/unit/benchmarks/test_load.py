"""The load benchmark's report: its Markdown table is computed from the measured figures."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.load import TARGETS, _body, render_markdown, sent_texts


def _target(rps: float, p50: float) -> dict[str, Any]:
    return {"rps": rps, "p50": p50, "p95": p50, "p99": p50, "errors": 0}


def _row(policy_rps: float, policy_p50: float) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(TARGETS, (_target(600, 50), _target(590, 52),
                                             _target(policy_rps, policy_p50),
                                             _target(policy_rps, 51),
                                             _target(policy_rps / 2.5, policy_p50 + 10),
                                             _target(policy_rps * 1.5, policy_p50 - 4),
                                             _target(policy_rps * 0.8, policy_p50 + 2)),
                                   strict=True))
    row["proxy+policy"]["embedder"] = {"busy_share": 0.96, "mean_batch": 11.0, "ms_per_text": 5.7}
    row["embedding_floor"] = {"single_ms_p50": 16.0, "single_ms_back_to_back_p50": 12.0,
                              "batched_texts_per_s": 250.0}
    return row


def test_the_table_derives_shares_and_ratios_from_the_figures() -> None:
    report = {
        "results": {"floor_batch": 64, "levels": {"json@1": _row(15, 74), "json@32": _row(175, 180)},
                    "rss_mb": {"proxy+policy": 1020.4}},
        "provenance": {"seconds_per_level": 8.0, "upstream_latency_ms": 50.0, "git_commit": "abc",
                       "git_dirty": False, "started_utc": "2026-12-01T00:00:00", "wall_time_s": 9.0,
                       "host": {"cpus": 2}},
    }
    markdown = render_markdown(report)
    assert "`python -m benchmarks.load --concurrency 1 32 --seconds-per-level 8 " in markdown
    one, thirty_two = (line for line in markdown.splitlines() if line.startswith("| 1") or
                       line.startswith("| 32"))
    # added p50 74 - 50 = 24 ms: 1.50x the 16 ms floor, 2.00x the 12 ms back-to-back one;
    # torch's 84 - 50 = 34 ms, int8's 70 - 50 = 20 ms
    assert "| 24.0 | 34.0 | 20.0 | **1.50×** (2.00×) |" in one
    # 175 / 70 rps on torch, 262 / 70 on int8; 175 / 250 texts/s; scope 140 / 250
    assert ("| 175 | 70 | **2.50×** | 262 | **3.75×** | **70%** | 140 | **56%** | "
            "96% / 11.0 / 5.7 (4.0) |") in thirty_two
    assert "proxy+policy 1,020 MB" in markdown


def _sent(tag: str, count: int) -> list[str]:
    """The user messages of the first ``count`` request bodies of a drive tagged ``tag``."""
    return [json.loads(_body(i, True, tag))["messages"][0]["content"] for i in range(count)]


def test_the_floor_embeds_texts_the_proxy_was_sent() -> None:
    sent = _sent("True-32-0", 450)
    texts = sent_texts("True-32-0", 450, 64)
    assert len(set(texts)) == 64 and set(texts) <= set(sent)
    numbers = sorted(sent.index(text) for text in texts)  # spread over the whole drive
    assert numbers[0] == 0 and numbers[-1] >= 450 - 450 // 64 - 1
    few = sent_texts("True-1-0", 5, 20)  # fewer sent than wanted: they repeat
    assert len(few) == 20 and set(few) == set(_sent("True-1-0", 5))
