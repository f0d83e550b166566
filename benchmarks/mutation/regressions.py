"""Known bugs the suite must always catch, applied one at a time to a copy of the tree.

Each :class:`Regression` replaces one exact snippet of a module and names the tests that must
then fail. The first seven once survived the whole suite (issue 21's mutation spot-check); the three
after them guard later rules (tool calls under the output guards, the retain side of the
detector, over-refusal in matched utility); the last two are controls the suite already caught. A snippet that no longer occurs exactly once
is an error, not a pass: when the code moves, the list moves with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data_dir import DATA_DIR_ENV, resolve_data_dir
from benchmarks.processes import REPO

__all__ = ["REGRESSIONS", "Regression", "RegressionResult", "run_regressions", "tree_copy"]

_STREAM = "tests/e2e/test_stream_guarantee.py"


@dataclass(frozen=True)
class Regression:
    """One deliberate bug: ``old`` (which must occur once in ``path``) becomes ``new``."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]

    def apply(self, root: Path) -> None:
        """Write the bug into the tree at ``root``; raises ValueError if ``old`` is not unique."""
        target = root / self.path
        source = target.read_text(encoding="utf-8")
        count = source.count(self.old)
        if count != 1:
            raise ValueError(f"{self.name}: the snippet occurs {count} times in {self.path}")
        target.write_text(source.replace(self.old, self.new), encoding="utf-8")


REGRESSIONS: tuple[Regression, ...] = (
    Regression(
        "stream skips the final output check", "proxy/pipeline.py",
        "verdict = await self._check(choice.view.close(), True)",
        "verdict = None",
        (_STREAM, "tests/unit/filters/test_output_filter.py"),
    ),
    Regression(
        "stream holds nothing back", "proxy/policy.py",
        "return min((g.release_limit(text) for g in self.output_guards), default=len(text))",
        "return len(text)",
        (_STREAM, "tests/unit/filters/test_output_filter.py"),
    ),
    Regression(
        "calibration rounds the FNR rank up", "filters/negatives.py",
        "np.floor(self.target_fnr", "np.ceil(self.target_fnr",
        ("tests/unit/filters/test_negatives.py",),
    ),
    Regression(
        "a policy block is a 403 permission_error", "proxy/core/errors.py",
        '    """A request a policy blocks with ``on_block: error``; never retried by the SDK."""\n',
        '    """A request a policy blocks with ``on_block: error``; never retried by the SDK."""\n'
        '\n    status_code = 403\n    error_type = "permission_error"\n',
        ("tests/e2e/test_block_modes.py",),
    ),
    Regression(
        "nothing in band: pick by efficacy", "benchmarks/harness/tradeoff.py",
        "key=lambda r: (utility(r) or 0.0, efficacy(r) or 0.0)",
        "key=lambda r: (efficacy(r) or 0.0, utility(r) or 0.0)",
        ("tests/unit/benchmarks/test_tradeoff.py",),
    ),
    Regression(
        "detect-mode utility is the flag rate", "benchmarks/harness/tradeoff.py",
        "return 1.0 - mean(flagged) if flagged else None",
        "return mean(flagged) if flagged else None",
        ("tests/unit/benchmarks/test_tradeoff.py",),
    ),
    Regression(
        "NPO coefficient -0.5/beta", "benchmarks/baselines/npo.py",
        "return -2 / beta *", "return -0.5 / beta *",
        ("tests/unit/benchmarks/test_losses.py",),
    ),
    Regression(
        "ERASE delete bookkeeping (control)", "icul/erase.py",
        "traj.counts[step][c] -= 1", "traj.counts[step][c] -= 2",
        ("tests/unit/icul/test_erase.py",),
    ),
    Regression(
        "output guards do not read tool calls", "proxy/release.py",
        "for channel, value in fragments(fields):", "for channel, value in ():",
        ("tests/unit/proxy/test_release.py", "tests/e2e/test_tool_calls.py"),
    ),
    Regression(
        "the input detector ignores the retain side", "filters/input_detector.py",
        "and score > retain + self.retain_margin]", "]",
        ("tests/unit/filters/test_retain_margin.py",),
    ),
    Regression(
        "matched utility ignores over-refusal", "benchmarks/harness/tradeoff.py",
        "parts = [part for part in (rouge_utility(row), answer_rate(row)) if part is not None]",
        "parts = [part for part in (rouge_utility(row),) if part is not None]",
        ("tests/unit/benchmarks/test_tradeoff.py",),
    ),
    Regression(
        "upstream timeout is a 502 (control)", "proxy/core/errors.py",
        "status_code = 504", "status_code = 502",
        ("tests/unit/proxy/test_errors.py", "tests/e2e/test_upstream.py"),
    ),
)


@dataclass(frozen=True)
class RegressionResult:
    """What the tests said about one regression: killed means they failed (pytest exit 1)."""

    name: str
    path: str
    killed: bool
    exit_code: int
    elapsed_s: float


def _tracked_files(root: Path) -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True,
    ).stdout.decode()
    return [name for name in listing.split("\0") if name and (root / name).is_file()]


@contextmanager
def tree_copy(root: Path = REPO) -> Iterator[Path]:
    """A temporary copy of the working tree (tracked and untracked, not ignored, files)."""
    with tempfile.TemporaryDirectory(prefix="unlearn-mutation-") as tmp:
        copy = Path(tmp) / root.name
        for name in _tracked_files(root):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, copy / name)
        yield copy


def _pytest(root: Path, tests: Sequence[str]) -> int:
    env = {**os.environ, DATA_DIR_ENV: str(resolve_data_dir())}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return subprocess.run(command, cwd=root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def run_regressions(
    regressions: Sequence[Regression] = REGRESSIONS, *, root: Path = REPO
) -> list[RegressionResult]:
    """Apply each regression to a fresh copy of ``root`` and run its tests there.

    Raises RuntimeError when those tests fail on the unmutated tree (a kill would mean nothing).
    """
    with tree_copy(root) as copy:
        tests = sorted({test for regression in regressions for test in regression.tests})
        if (code := _pytest(copy, tests)) != 0:
            raise RuntimeError(f"the regression tests fail on the unmutated tree (exit {code})")
    print("  unmutated tree: the regression tests pass", flush=True)
    results = []
    for regression in regressions:
        with tree_copy(root) as copy:
            regression.apply(copy)
            started = time.perf_counter()
            code = _pytest(copy, regression.tests)
        results.append(RegressionResult(
            regression.name, regression.path, code == 1, code,
            round(time.perf_counter() - started, 1),
        ))
        status = "killed" if code == 1 else f"NOT KILLED (pytest exit {code})"
        print(f"  {regression.name}: {status}", flush=True)
    return results
