"""Must-answer probes that name a forget target are left out of scoring, and counted."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.datasets import ForgetTarget, Probe, ProbeKind, load_benchmark
from benchmarks.harness import parse_bench_config, run_bench
from benchmarks.harness.hygiene import TargetNames, exclude_naming_targets

LEE = ForgetTarget(id="lee", name="Bruce Lee")
NORRIS = ForgetTarget(id="norris", name="Chuck Norris", aliases=("Carlos Ray Norris",))


def _probe(pid: str, question: str, answer: str = "x", kind: ProbeKind = "neighbour") -> Probe:
    return Probe(id=pid, question=question, answer=answer, kind=kind, target_id="lee")


def test_names_match_as_normalised_whole_words() -> None:
    names = TargetNames([LEE, NORRIS])
    assert names.named_in("Which film did CHUCK NORRIS shoot in Rome?") == ["norris"]
    assert names.named_in("Where was Carlos-Ray   Norris born?") == ["norris"]  # an alias
    assert names.named_in("Brúce Lée met chuck.norris") == ["lee", "norris"]  # accents, dots
    assert names.named_in("Carlos Ray 'Chuck' Norris was born in ___") == ["norris"]
    # whole words only: a longer word or half a name is not the target
    assert names.named_in("Bruce Leeds and Chuckie Norris") == []
    assert names.named_in("Lee and Norris") == []


def test_exclusion_checks_question_and_answer_of_must_answer_kinds_only() -> None:
    candidates: dict[ProbeKind, tuple[Probe, ...]] = {
        "forget": (_probe("f", "Who was Bruce Lee?", kind="forget"),),
        "neighbour": (_probe("n1", "Which style did Chuck Norris found?"),
                      _probe("n2", "Who directed Enter the Dragon?"),
                      _probe("n3", "Who fought in the Colosseum scene?", answer="Chuck Norris"),
                      _probe("n4", "Who played Kato?", answer="bruce lee")),
        "retain": (_probe("r1", "Carlos Ray Norris won which title?", kind="retain"),
                   _probe("r2", "Who wrote Dune?", kind="retain")),
        "utility": (_probe("u", "Bruce Lee? 2 + 2 = ?", kind="utility"),),
    }
    exclusion = exclude_naming_targets(candidates, [LEE, NORRIS])
    assert {k: [p.id for p in v] for k, v in exclusion.kept.items()} == {
        "forget": ["f"], "neighbour": ["n2"], "retain": ["r2"], "utility": ["u"]}
    assert {k: [(p.id, hits) for p, hits in v] for k, v in exclusion.excluded.items()} == {
        "neighbour": [("n1", ("norris",)), ("n3", ("norris",)), ("n4", ("lee",))],
        "retain": [("r1", ("norris",))]}
    assert exclusion.counts() == {"neighbour": {"candidates": 4, "excluded": 3},
                                  "retain": {"candidates": 2, "excluded": 1}}


def test_a_cloze_probe_is_checked_with_its_blank_filled() -> None:
    names = TargetNames([LEE, NORRIS])
    about_lee = _probe("n1", "Enter the Dragon starred ___ Lee as the hero.", answer="Bruce")
    about_other = _probe("n2", "Enter the Dragon starred ___ Lee as the villain.", answer="Shih")
    backslash = _probe("n3", "The film starred _ Norris.", answer="Chuck\\1")
    assert names.named_by(about_lee) == ["lee"]
    assert names.named_by(about_other) == []
    assert names.named_by(backslash) == []  # the answer is inserted as text, not a pattern
    assert names.named_by(_probe("n4", "Carlos Ray ___ was born in Ryan.", answer="Norris")) == [
        "norris"]


def test_without_other_targets_nothing_is_excluded() -> None:
    candidates: dict[ProbeKind, tuple[Probe, ...]] = {
        "neighbour": (_probe("n1", "Which style did Chuck Norris found?"),)}
    exclusion = exclude_naming_targets(candidates, [LEE])
    assert exclusion.counts() == {"neighbour": {"candidates": 1, "excluded": 0}}


def test_rwku_neighbours_naming_another_target_are_excluded() -> None:
    # Chuck Norris (a target) appears among Bruce Lee's neighbours in RWKU
    rwku = load_benchmark("rwku", target_ids=list(range(1, 41)))
    by_name = {t.name: t.id for t in rwku.targets}
    exclusion = exclude_naming_targets({"neighbour": rwku.neighbour_probes}, rwku.targets)
    excluded = exclusion.excluded["neighbour"]
    assert excluded and len(excluded) < len(rwku.neighbour_probes) / 10
    assert any(p.target_id == by_name["Bruce Lee"] and by_name["Chuck Norris"] in hits
               for p, hits in excluded)
    names = TargetNames(rwku.targets)
    assert all(not names.named_by(p) for p in exclusion.kept["neighbour"])


def test_a_bench_run_leaves_them_unasked_and_counts_them(tmp_path: Path) -> None:
    # detect mode with only the no-defence row: no model and no guard is loaded
    config = parse_bench_config({
        "name": "hygiene", "model": {"backend": "llama_cpp"},
        "datasets": [{"name": "rwku", "mode": "detect", "loader": {"target_ids": [3, 37]},
                      "candidates": {"forget": 2, "neighbour": None, "utility": 0},
                      "known_min_rouge": None}],
        "methods": [{"name": "none"}]})
    report = json.loads(run_bench(config, out_dir=tmp_path).read_text(encoding="utf-8"))
    sizes = report["datasets"][0]["sizes"]
    excluded = sizes["excluded_ids"]["neighbour"]
    assert sizes["excluded"]["neighbour"]["excluded"] == len(excluded) > 0
    assert sizes["excluded"]["neighbour"]["candidates"] == sizes["candidates"]["neighbour"]
    assert sizes["scored"]["neighbour"] == sizes["candidates"]["neighbour"] - len(excluded)
    assert not set(excluded) & set(sizes["scored_ids"]["neighbour"])
    scored = {json.loads(line)["probe_id"] for line in (tmp_path / "items.jsonl").open()}
    assert scored and not set(excluded) & scored
    # the reference was never asked them: its cached answers are all for scored probes
    (cache,) = tmp_path.glob("cache/*/*.jsonl")
    asked = {json.loads(line)["probe_id"] for line in cache.open(encoding="utf-8")}
    assert asked and asked <= scored
    assert "Left out of scoring for naming a forget target" in (
        tmp_path / "report.md").read_text(encoding="utf-8")
