"""``python -m benchmarks.mutation`` (``make mutation``): regressions, mutmut, report.

    python -m benchmarks.mutation                    # everything (about an hour on 2 cores)
    python -m benchmarks.mutation --skip-mutmut      # the known-bug list, report from mutants/
    python -m benchmarks.mutation --skip-regressions # mutmut; keeps the last regression results
    python -m benchmarks.mutation --recheck          # also re-run survivors (after new tests)

mutmut keeps its results in ``mutants/`` and, run again, tests only mutants it has not judged
(new tests get their coverage collected, but a survivor stays a survivor): ``--recheck`` names
the survivors and untested mutants so that mutmut runs them again against today's tests.

Exits 1 when a regression survives or a module scores below ``--min-score``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.data_dir import DATA_DIR_ENV, resolve_data_dir
from benchmarks.mutation.regressions import run_regressions
from benchmarks.mutation.report import (
    Mutant, as_json, load_mutants, load_reviewed, render, score_modules,
)
from benchmarks.processes import REPO
from benchmarks.provenance import provenance

RESULTS = REPO / "benchmarks" / "results"


def mutated_modules() -> list[str]:
    """The module paths ``[tool.mutmut] only_mutate`` names."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return list(config["tool"]["mutmut"]["only_mutate"])


def _mutmut(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, DATA_DIR_ENV: str(resolve_data_dir())}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=REPO, env=env, text=True,
                          capture_output=capture, check=False)


def refresh_unmutated_copies(mutants_dir: Path, mutated: Sequence[str]) -> int:
    """Bring mutmut's copies of the modules it does not mutate up to date with the tree.

    mutmut copies the source once and then only regenerates the modules it mutates, so the
    tests of a later run would import stale copies of everything else. Returns files updated.
    """
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    updated = 0
    for root in config["tool"]["mutmut"]["source_paths"]:
        for source in (REPO / root).rglob("*.py"):
            relative = source.relative_to(REPO)
            copy = mutants_dir / relative
            if str(relative) in mutated or not copy.exists():
                continue
            if copy.read_bytes() != source.read_bytes():
                shutil.copy2(source, copy)
                updated += 1
    return updated


def _with_diffs(mutants: Sequence[Mutant], reviewed: dict[str, str]) -> list[Mutant]:
    """Attach the reviewed reason to each mutant and a diff to every survivor."""
    out = []
    for mutant in mutants:
        mutant = replace(mutant, reason=reviewed.get(mutant.name))
        if mutant.status in ("survived", "no tests"):
            shown = _mutmut("show", mutant.name, capture=True)
            mutant = replace(mutant, diff=shown.stdout.strip())
        out.append(mutant)
    return out


def _run_mutmut(max_children: int, *, recheck: bool) -> bool:
    """mutmut over the configured modules (and, with ``recheck``, its survivors again)."""
    print("mutmut:", flush=True)
    if (REPO / "mutants").exists():
        print(f"  refreshed {refresh_unmutated_copies(REPO / 'mutants', mutated_modules())} "
              "unmutated module copies", flush=True)
    children = ("--max-children", str(max_children))
    if _mutmut("run", *children).returncode != 0:
        print("mutmut failed", file=sys.stderr)
        return False
    again = [m.name for m in load_mutants(REPO / "mutants", mutated_modules())
             if m.status in ("survived", "no tests")]
    if recheck and again and _mutmut("run", *children, *again).returncode != 0:
        print("mutmut failed on the recheck", file=sys.stderr)
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-regressions", action="store_true",
                        help="keep the regression results of the last report")
    parser.add_argument("--skip-mutmut", action="store_true",
                        help="report mutmut's results in mutants/ without running it")
    parser.add_argument("--recheck", action="store_true",
                        help="re-run mutants that survived or had no test")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--min-score", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.time()
    saved = _previous_regressions(args.out)
    if not args.skip_regressions:
        print("Regression list:", flush=True)
        saved = [asdict(r) for r in run_regressions()]
    if not args.skip_mutmut and not _run_mutmut(args.max_children, recheck=args.recheck):
        return 2
    mutants = _with_diffs(load_mutants(REPO / "mutants", mutated_modules()), load_reviewed())
    flags = " ".join(sys.argv[1:] if argv is None else argv)
    meta = provenance(started, command=f"python -m benchmarks.mutation {flags}".strip(),
                      mutmut=importlib.metadata.version("mutmut"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mutation.md").write_text(render(mutants, saved, meta), encoding="utf-8")
    (args.out / "mutation.json").write_text(
        json.dumps({"provenance": meta, "regressions": saved, **as_json(mutants)}, indent=2) + "\n",
        encoding="utf-8")
    scores = score_modules(mutants)
    for s in scores:
        print(f"  {s.module}: {dict(s.counts)} score {s.score}")
    low = [s.module for s in scores if s.score is not None and s.score < args.min_score]
    failed = [r["name"] for r in saved if not r["killed"]]
    print(f"wrote {args.out / 'mutation.md'}; below {args.min_score}: {low or 'none'}; "
          f"regressions not killed: {failed or 'none'}")
    return 1 if low or failed else 0


def _previous_regressions(out: Path) -> list[dict[str, object]]:
    """The regression results of the last report (kept by ``--skip-regressions``)."""
    path = out / "mutation.json"
    return list(json.loads(path.read_text())["regressions"]) if path.exists() else []


if __name__ == "__main__":
    raise SystemExit(main())
