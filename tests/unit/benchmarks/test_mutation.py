"""The mutation-testing tooling: the regression list stays in step with the code, the report
counts what mutmut recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.mutation.__main__ import mutated_modules, refresh_unmutated_copies
from benchmarks.mutation.regressions import REGRESSIONS, Regression
from benchmarks.mutation.report import (
    Mutant, load_mutants, load_reviewed, render, score_modules, status_of,
)
from benchmarks.processes import REPO


@pytest.mark.parametrize("regression", REGRESSIONS, ids=[r.name for r in REGRESSIONS])
def test_each_regression_still_applies_once(regression: Regression) -> None:
    """When the code moves, the known bug must move with it (else it silently tests nothing)."""
    assert (REPO / regression.path).read_text(encoding="utf-8").count(regression.old) == 1
    assert regression.old != regression.new
    assert all((REPO / test).is_file() for test in regression.tests)


def test_apply_writes_the_bug_and_refuses_an_ambiguous_snippet(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("a = 1\nb = 1\n")
    Regression("b", "m.py", "b = 1", "b = 2", ()).apply(tmp_path)
    assert (tmp_path / "m.py").read_text() == "a = 1\nb = 2\n"
    with pytest.raises(ValueError, match="occurs 0 times"):
        Regression("gone", "m.py", "c = 1", "c = 2", ()).apply(tmp_path)
    (tmp_path / "m.py").write_text("x\nx\n")
    with pytest.raises(ValueError, match="occurs 2 times"):
        Regression("twice", "m.py", "x", "y", ()).apply(tmp_path)


def test_statuses_follow_mutmut_exit_codes() -> None:
    assert [status_of(c) for c in (1, 3, 0, 33, 5, 36, -24, None, 99)] == [
        "killed", "killed", "survived", "no tests", "no tests", "timeout", "timeout",
        "not checked", "suspicious"]


def test_scores_leave_out_reviewed_mutants_but_count_untested_ones() -> None:
    mutants = [
        Mutant("a.x__mutmut_1", "a.py", "killed"), Mutant("a.x__mutmut_2", "a.py", "timeout"),
        Mutant("a.x__mutmut_3", "a.py", "survived"),
        Mutant("a.x__mutmut_4", "a.py", "survived", reason="same behaviour"),
        Mutant("b.y__mutmut_1", "b.py", "no tests"),
    ]
    a, b, total = score_modules(mutants)
    assert (a.module, a.score, dict(a.counts)) == (
        "a.py", 2 / 3, {"killed": 1, "timeout": 1, "survived": 1, "reviewed": 1})
    assert (b.module, b.score) == ("b.py", 0.0)
    assert (total.module, total.score) == ("all", 2 / 4)
    meta = {"command": "c", "git_commit": "abc", "git_dirty": False, "wall_time_s": 12.0,
            "mutmut": "3.8.1"}
    regressions = [{"name": "bug", "path": "a.py", "killed": True, "elapsed_s": 1.5}]
    text = render(mutants, regressions, meta)
    assert "| bug | `a.py` | yes | 1.5 |" in text
    assert "| `a.py` | 4 | 1 | 1 | 1 | 1 | 0 | 66.7 % |" in text
    assert "## Survivors (2)" in text and "- `a.x__mutmut_3`\n" in text
    assert "- `b.y__mutmut_1` (no tests)" in text
    assert "- `a.x__mutmut_4`: same behaviour" in text


def test_load_mutants_reads_mutmut_meta_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    codes = {"pkg.m.x_f__mutmut_2": 0, "pkg.m.x_f__mutmut_1": 1}
    (tmp_path / "pkg" / "m.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    assert load_mutants(tmp_path, ["pkg/m.py"]) == [
        Mutant("pkg.m.x_f__mutmut_1", "pkg/m.py", "killed"),
        Mutant("pkg.m.x_f__mutmut_2", "pkg/m.py", "survived")]
    with pytest.raises(FileNotFoundError, match="no mutmut results for pkg/other.py"):
        load_mutants(tmp_path, ["pkg/other.py"])


def test_reviewed_mutants_name_mutated_modules_with_a_reason() -> None:
    prefixes = tuple(m.removesuffix(".py").replace("/", ".") + "." for m in mutated_modules())
    reviewed = load_reviewed()
    assert reviewed and all(name.startswith(prefixes) and "__mutmut_" in name
                            for name in reviewed)
    assert all(len(reason) > 20 for reason in reviewed.values())


def test_refresh_updates_only_stale_copies_of_unmutated_modules(tmp_path: Path) -> None:
    mutated = mutated_modules()
    stale = tmp_path / "proxy" / "store.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("old copy")
    kept = tmp_path / mutated[0]
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text("mutmut's trampolined module")
    assert refresh_unmutated_copies(tmp_path, mutated) == 1
    assert stale.read_bytes() == (REPO / "proxy" / "store.py").read_bytes()
    assert kept.read_text() == "mutmut's trampolined module"
