"""Read mutmut's results, join the reviewed survivors, and write the mutation report.

mutmut keeps one ``mutants/<module path>.meta`` JSON file per mutated module, mapping each
mutant's name (``<dotted module>.<mangled function>__mutmut_<n>``) to the exit code of its test
run. A survivor listed in ``reviewed.yaml`` was reviewed: an *equivalent* mutant (it cannot
change behaviour, so no test can kill it) or one that only rewords an error message (tests
assert errors by type and the field they name, not by their text); the score leaves those out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ModuleScore", "Mutant", "load_mutants", "load_reviewed", "render", "score_modules"]

REVIEWED = Path(__file__).with_name("reviewed.yaml")

# mutmut's exit-code convention (mutmut.stats.status_by_exit_code), folded to what the report
# counts: a pytest failure or internal error kills; a CPU-limit signal is a timeout.
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
           34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
           255: "timeout"}


@dataclass(frozen=True)
class Mutant:
    """One mutant's outcome; ``reason`` is set for a reviewed survivor."""

    name: str
    module: str
    status: str
    diff: str = ""
    reason: str | None = None


@dataclass
class ModuleScore:
    """Counts for one module; the score is (killed + timeout) / (total - reviewed): a mutant
    no selected test executes counts against it, as a survivor does."""

    module: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def scored(self) -> int:
        return sum(self.counts.values()) - self.counts["reviewed"]

    @property
    def score(self) -> float | None:
        killed = self.counts["killed"] + self.counts["timeout"]
        return killed / self.scored if self.scored else None


def status_of(exit_code: int | None) -> str:
    """The report status of a mutmut exit code (None: not run yet)."""
    if exit_code is None:
        return "not checked"
    return _STATUS.get(exit_code, "suspicious")


def load_mutants(mutants_dir: Path, modules: Sequence[str]) -> list[Mutant]:
    """Every mutant of ``modules`` (paths like ``proxy/pipeline.py``) with its status."""
    found = []
    for module in modules:
        meta = mutants_dir / f"{module}.meta"
        if not meta.exists():
            raise FileNotFoundError(f"no mutmut results for {module} ({meta} is missing)")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        found += [Mutant(name, module, status_of(code)) for name, code in sorted(codes.items())]
    return found


def load_reviewed(path: Path = REVIEWED) -> dict[str, str]:
    """Reviewed survivors: name -> why no test kills it."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    return {str(k): str(v) for k, v in (data or {}).items()}


def score_modules(mutants: Sequence[Mutant]) -> list[ModuleScore]:
    """One score per module, in the order the modules first appear, plus an ``all`` row."""
    scores: dict[str, ModuleScore] = {}
    total = ModuleScore("all")
    for mutant in mutants:
        status = "reviewed" if mutant.reason else mutant.status
        scores.setdefault(mutant.module, ModuleScore(mutant.module)).counts[status] += 1
        total.counts[status] += 1
    return [*scores.values(), total]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def render(
    mutants: Sequence[Mutant], regressions: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]
) -> str:
    """The Markdown report: regressions, per-module counts, survivors with their diffs."""
    lines = [
        "# Mutation testing", "",
        f"`{meta['command']}` on {meta['git_commit']} (dirty: {meta['git_dirty']}), "
        f"{meta['wall_time_s']:.0f} s, mutmut {meta['mutmut']}.", "",
        "## Regression list (each must be killed)", "",
        "| bug | module | killed | s |", "|---|---|---|---|",
        *(f"| {r['name']} | `{r['path']}` | {'yes' if r['killed'] else '**no**'} | {r['elapsed_s']} |"
          for r in regressions),
        "", "## mutmut", "",
        "| module | mutants | killed | timeout | survived | reviewed | no tests | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in score_modules(mutants):
        c = s.counts
        lines.append(
            f"| `{s.module}` | {sum(c.values())} | {c['killed']} | {c['timeout']} | "
            f"{c['survived']} | {c['reviewed']} | {c['no tests']} | {_pct(s.score)} |"
        )
    every = sum(score_modules(mutants)[-1].counts.values())
    caught = sum(1 for m in mutants if m.status in ("killed", "timeout"))
    lines += ["", "Score = (killed + timeout) / (mutants − reviewed); a mutant that no selected "
              "test executes (no tests) counts as a survivor. Counting the reviewed ones as "
              f"survivors too: {caught} / {every} = {_pct(caught / every if every else None)}.", ""]
    sections = (
        ("Survivors", lambda m: m.status in ("survived", "no tests") and not m.reason),
        ("Reviewed survivors (equivalent, or error wording only)", lambda m: bool(m.reason)),
    )
    for title, keep in sections:
        chosen = [m for m in mutants if keep(m)]
        lines += [f"## {title} ({len(chosen)})", ""]
        for m in chosen:
            note = f": {m.reason}" if m.reason else (" (no tests)" if m.status == "no tests" else "")
            lines += [f"- `{m.name}`{note}", "",
                      "  ```diff", *("  " + row for row in m.diff.splitlines()), "  ```", ""]
    return "\n".join(lines) + "\n"


def as_json(mutants: Sequence[Mutant]) -> dict[str, Any]:
    """Per-module counts and every mutant, for the JSON result."""
    return {
        "modules": [{"module": s.module, "counts": dict(s.counts), "score": s.score}
                    for s in score_modules(mutants)],
        "mutants": [asdict(m) for m in mutants],
    }
