"""Synthetic policies: valid, seeded, and no two targets share an id, a name or an alias."""

from __future__ import annotations

from typing import Any

from benchmarks.scaling import render_markdown
from benchmarks.synthetic_policy import synthetic_policy, synthetic_targets
from proxy.core.config import PolicyConfig


def test_ten_thousand_targets_are_distinct_and_valid() -> None:
    targets = synthetic_targets(10_000)
    for key in ("id", "name"):
        assert len({t[key] for t in targets}) == 10_000
    aliases = [a for t in targets for a in t["aliases"]]
    assert len(set(aliases)) == len(aliases) == 20_000
    assert not {t["name"] for t in targets} & set(aliases)
    policy = PolicyConfig.model_validate(synthetic_policy(50))
    assert len(policy.forget) == 50 and policy.forget[3].documents[0].text
    assert synthetic_targets(3, seed=1) == synthetic_targets(3, seed=1) != synthetic_targets(3)
    assert synthetic_targets(2, start=5) == synthetic_targets(7)[5:]


def _size(targets: int, p50: float) -> dict[str, Any]:
    return {"targets": targets, "forget_items": targets * 9, "compile_s": 1.0,
            "rss_added_mb": targets / 10, "rss_per_target_kb": 102.4, "guard_ms": {"p50": p50, "p99": 2 * p50},
            "add_one_target_s": 0.5, "new_target_blocked": True, "withdraw_one_target_s": 0.1,
            "withdrawn_target_unnamed": False}


def test_the_scaling_table_compares_with_the_25_target_policy() -> None:
    report = {"results": {"sizes": [_size(25, 2.0), _size(1000, 3.0)]},
              "provenance": {"command": "python -m benchmarks.scaling", "git_commit": "abc",
                             "git_dirty": False, "started_utc": "t", "wall_time_s": 1.0,
                             "host": {"cpus": 2}}}
    markdown = render_markdown(report)
    assert "| 1,000 | 9,000 | 1.0 | 100 | 102 | 3.00 | 6.00 | 1.50× | 0.50 | yes | 0.10 | NO |" in markdown


def test_the_component_timings_check_the_graph_and_the_aliases() -> None:
    from benchmarks.scaling import alias_lookup, index_search

    search = index_search(1000, queries=40)
    assert search["items"] == 1000 and search["hnsw_recall_at_1"] >= 0.99
    (row,) = alias_lookup([30], texts=5)
    assert row["targets"] == 30 and row["finds_a_name"]
