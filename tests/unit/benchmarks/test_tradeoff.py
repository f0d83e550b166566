"""Utility, efficacy and the row chosen per method at matched utility (Wang et al. 2024).

Values are dyadic fractions (0.125, 0.625…) so every difference and band edge is exact in
floating point and the expected numbers below are plain arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from benchmarks.harness.scoring import Row
from benchmarks.harness.tradeoff import (
    Matched, answer_rate, efficacy, match_utility, rouge_utility, utility,
)


def _row(method: str, label: str | None = None, **metrics: float) -> Row:
    row = Row("d", method, label or method, None, None)
    row.metrics = dict(metrics)
    return row


def _generate(method: str, label: str, *, forget: float, neighbour: float) -> Row:
    return _row(method, label, forget_rouge_l=forget, neighbour_rouge_l=neighbour)


# utility and efficacy -----------------------------------------------------------------------


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"neighbour_rouge_l": 0.5, "retain_rouge_l": 0.75}, 0.625),  # (0.5 + 0.75) / 2
    ({"retain_rouge_l": 0.375}, 0.375),
    ({"neighbour_blocked": 0.25, "retain_blocked": 0.0}, 0.875),  # 1 - (0.25 + 0) / 2
    ({"retain_blocked": 0.125}, 0.875),  # 1 - 0.125
    # both sides: the mean of ROUGE utility 0.5 and answer rate 1 - 0.25
    ({"neighbour_rouge_l": 0.5, "neighbour_blocked": 0.25}, 0.625),
    # generate mode: ROUGE (0.5 + 0.75) / 2 = 0.625, answer rate 1 - (0.25 + 0) / 2 = 0.875
    ({"neighbour_rouge_l": 0.5, "retain_rouge_l": 0.75, "neighbour_over_refusal": 0.25,
      "retain_over_refusal": 0.0}, 0.75),
    ({"neighbour_over_refusal": 0.5}, 0.5),  # only the answer rate
    ({"neighbour_blocked": 0.0}, 1.0),  # nothing flagged: full utility
    ({"forget_rouge_l": 0.25, "utility_mcq": 0.5}, None),  # no neighbour/retain metric
    ({}, None),
])
def test_utility(metrics: dict[str, float], expected: float | None) -> None:
    assert utility(_row("m", **metrics)) == expected


def test_utility_parts() -> None:
    row = _row("m", neighbour_rouge_l=0.5, retain_rouge_l=0.25, neighbour_over_refusal=0.125,
               forget_rouge_l=0.0, forget_refusal=1.0)  # forget metrics play no part
    assert (rouge_utility(row), answer_rate(row), utility(row)) == (0.375, 0.875, 0.625)
    assert rouge_utility(_row("m", neighbour_blocked=0.5)) is None
    assert answer_rate(_row("m", neighbour_rouge_l=0.5)) is None


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"forget_rouge_l": 0.25}, 0.75),  # 1 - 0.25
    ({"forget_mcq": 0.375}, 0.625),  # 1 - 0.375
    ({"forget_rouge_l": 0.125, "forget_mcq": 0.5}, 0.875),  # ROUGE first: 1 - 0.125
    ({"forget_blocked": 0.625}, 0.625),  # detect mode: the detection rate itself
    ({"neighbour_rouge_l": 0.5}, None),
])
def test_efficacy(metrics: dict[str, float], expected: float | None) -> None:
    assert efficacy(_row("m", **metrics)) == expected


# match_utility ------------------------------------------------------------------------------

# The no-defence row: utility 0.75, efficacy 1 - 0.875 = 0.125. With points = 12.5 the band is
# utility >= 0.75 - 0.125 = 0.625 (its edge included).
NONE = (0.875, 0.75)
POINTS = 12.5


def _choose(rows: list[Row], references: Mapping[str, str] | None = None,
            points: float = POINTS) -> dict[str, Matched]:
    return {m.method: m for m in match_utility(rows, "none", points, references)}


@pytest.mark.parametrize(("candidates", "expected"), [
    # in band: best efficacy, even though det@out forgets more (0.875) outside the band
    pytest.param([("det@edge", 0.25, 0.625), ("det@out", 0.125, 0.5), ("det@top", 0.5, 0.75)],
                 Matched("det", "det@edge", True, 0.625, 0.75), id="in-band-best-efficacy"),
    # in band, equal efficacy 0.75: the higher utility wins although it comes second
    pytest.param([("det@low", 0.25, 0.625), ("det@high", 0.25, 0.75)],
                 Matched("det", "det@high", True, 0.75, 0.75), id="in-band-utility-tiebreak"),
    pytest.param([("det@a", 0.25, 0.75), ("det@b", 0.25, 0.75)],
                 Matched("det", "det@a", True, 0.75, 0.75), id="full-tie-first-seen"),
    # nothing in band: the highest utility (0.5), not the best efficacy (0.875 at utility 0.25)
    pytest.param([("det@wild", 0.125, 0.25), ("det@mild", 0.5, 0.5)],
                 Matched("det", "det@mild", False, 0.5, 0.5), id="none-in-band-best-utility"),
    # nothing in band, equal utility 0.5: the higher efficacy (1 - 0.25 = 0.75)
    pytest.param([("det@a", 0.75, 0.5), ("det@b", 0.25, 0.5)],
                 Matched("det", "det@b", False, 0.5, 0.75), id="none-in-band-efficacy-tiebreak"),
    # in band, efficacy 0 (forget ROUGE-L 1) ranks below efficacy 1 - 0.5 = 0.5
    pytest.param([("det@kept", 1.0, 0.75), ("det@some", 0.5, 0.625)],
                 Matched("det", "det@some", True, 0.625, 0.5), id="in-band-zero-efficacy-last"),
    # nothing in band, equal utility 0.5: efficacy 0 ranks below 1 - 0.75 = 0.25
    pytest.param([("det@kept", 1.0, 0.5), ("det@some", 0.75, 0.5)],
                 Matched("det", "det@some", False, 0.5, 0.25),
                 id="none-in-band-zero-efficacy-last"),
])
def test_match_utility_selection(candidates: list[tuple[str, float, float]],
                                 expected: Matched) -> None:
    rows = [_generate("none", "none", forget=NONE[0], neighbour=NONE[1])]
    rows += [_generate("det", label, forget=f, neighbour=n) for label, f, n in candidates]
    chosen = match_utility(rows, "none", POINTS)
    assert chosen == [Matched("none", "none", True, 0.75, 0.125), expected]
    # every row is flagged: inside iff 0.75 - utility <= 0.125
    assert [r.matched for r in rows[1:]] == [n >= 0.625 for _, _, n in candidates]


def test_match_utility_zero_utility_in_a_wide_band_ranks_lowest() -> None:
    # a 100-point band holds every row, utility 0 included; equal efficacy 1 - 0.5 = 0.5, so
    # the higher utility (0.25) wins over utility 0 although it comes second
    rows = [_generate("none", "none", forget=NONE[0], neighbour=NONE[1]),
            _generate("det", "det@zero", forget=0.5, neighbour=0.0),
            _generate("det", "det@some", forget=0.5, neighbour=0.25)]
    assert _choose(rows, points=100.0)["det"] == Matched("det", "det@some", True, 0.25, 0.5)
    assert [r.matched for r in rows] == [True, True, True]


def test_match_utility_reads_mcq_forget_sets() -> None:
    rows = [_row("none", forget_mcq=0.75, neighbour_rouge_l=0.75),
            _row("det", "det@1", forget_mcq=0.25, neighbour_rouge_l=0.625)]
    # efficacy 1 - 0.25; utility drop (0.75 - 0.625) * 100 = 12.5 points, at the band's edge
    assert _choose(rows)["det"] == Matched("det", "det@1", True, 0.625, 0.75)


@pytest.mark.parametrize(("points", "expected"), [
    # det@0.5: utility 1 - (0.25 + 0) / 2 = 0.875, detects 0.75; det@0.7: utility 1, detects 0.5
    (12.5, Matched("det", "det@0.5", True, 0.875, 0.75)),  # both within 12.5 points of 1.0
    (10.0, Matched("det", "det@0.7", True, 1.0, 0.5)),  # det@0.5 is 12.5 points down
])
def test_match_utility_in_detect_mode(points: float, expected: Matched) -> None:
    rows = [_row("none", forget_blocked=0.0, neighbour_blocked=0.0, retain_blocked=0.0),
            _row("det", "det@0.5", forget_blocked=0.75, neighbour_blocked=0.25,
                 retain_blocked=0.0),
            _row("det", "det@0.7", forget_blocked=0.5, neighbour_blocked=0.0,
                 retain_blocked=0.0)]
    chosen = _choose(rows, points=points)
    assert chosen["none"] == Matched("none", "none", True, 1.0, 0.0)
    assert chosen["det"] == expected


@pytest.mark.parametrize(("references", "ga_matched", "engine_matched"), [
    # ga's utility 0.4375 is 6.25 points below its engine's original (0.5): inside
    ({"ga": "engine"}, True, False),
    # against no defence (0.75) it is 31.25 points down; the engine row itself 25 points
    (None, False, False),
    ({"ga": "engine", "engine": "engine"}, True, True),
])
def test_match_utility_baselines_use_their_own_reference(
        references: Mapping[str, str] | None, ga_matched: bool, engine_matched: bool) -> None:
    rows = [_generate("none", "none", forget=NONE[0], neighbour=NONE[1]),
            _generate("engine", "engine", forget=0.875, neighbour=0.5),
            _generate("ga", "ga@1", forget=0.25, neighbour=0.4375)]
    chosen = _choose(rows, references)
    assert chosen["ga"] == Matched("ga", "ga@1", ga_matched, 0.4375, 0.75)
    assert chosen["engine"].matched is engine_matched
    assert [r.matched for r in rows] == [True, engine_matched, ga_matched]


def test_match_utility_rows_lacking_metrics() -> None:
    rows = [_generate("none", "none", forget=NONE[0], neighbour=NONE[1]),
            _row("empty", "empty@1"),
            _row("half", "half@bare"), _row("half", "half@1", neighbour_rouge_l=0.25),
            _generate("orphan", "orphan@1", forget=0.5, neighbour=0.75)]
    chosen = _choose(rows, {"orphan": "missing"})
    assert chosen["empty"] == Matched("empty", "empty@1", False, None, None)
    # no utility counts as 0 when nothing is in band: the row with utility 0.25 is chosen
    assert chosen["half"] == Matched("half", "half@1", False, 0.25, None)
    # a reference with no rows gives no band: unknown, not unmatched
    assert chosen["orphan"] == Matched("orphan", "orphan@1", False, 0.75, 0.5)
    assert [r.matched for r in rows] == [True, None, None, False, None]


def test_match_utility_without_reference_metrics_marks_nothing() -> None:
    rows = [_row("none", forget_rouge_l=0.5), _generate("det", "det@1", forget=0.25, neighbour=1.0)]
    assert _choose(rows)["det"] == Matched("det", "det@1", False, 1.0, 0.75)
    assert [r.matched for r in rows] == [None, None]


def test_match_utility_keeps_first_seen_method_order() -> None:
    rows = [_generate(m, m, forget=0.5, neighbour=0.5) for m in ("b", "none", "a", "b")]
    assert [m.method for m in match_utility(rows, "none", POINTS)] == ["b", "none", "a"]


def test_over_refusal_counts_against_utility_in_the_choice() -> None:
    """Issue 17: a row that refuses a third of the neighbours must not win over one that
    refuses none just because their ROUGE utility is equal."""
    rows = [_row("none", forget_rouge_l=0.875, neighbour_rouge_l=0.25, neighbour_over_refusal=0.0),
            # refuses a third of the neighbours, which the model had wrong anyway: ROUGE 0.25 too
            _row("det", "det@refusing", forget_rouge_l=0.0, neighbour_rouge_l=0.25,
                 neighbour_over_refusal=1 / 3),
            _row("det", "det@answering", forget_rouge_l=0.5, neighbour_rouge_l=0.25,
                 neighbour_over_refusal=0.0)]
    refusing, answering = rows[1], rows[2]
    # the old rule (utility = ROUGE only): both rows at the reference's 0.25, so both are in
    # any band and the higher efficacy (1 - 0 against 1 - 0.5) picks the refusing row
    assert rouge_utility(refusing) == rouge_utility(answering) == rouge_utility(rows[0])
    old = max([refusing, answering], key=lambda r: (efficacy(r) or 0.0, rouge_utility(r) or 0.0))
    assert old is refusing
    # the rule now: utility (0.25 + 2/3) / 2 is 16.7 points below the reference's (0.25 + 1) / 2
    chosen = _choose(rows, points=2.0)["det"]
    assert chosen == Matched("det", "det@answering", True, 0.625, 0.5)
    assert utility(refusing) == pytest.approx(0.625 - 1 / 6)
    assert [r.matched for r in rows] == [True, False, True]
