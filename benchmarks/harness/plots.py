"""PNG trade-off plots (matplotlib, Agg backend): forget efficacy vs utility per method.

One figure per dataset: every method is a point, a swept method a curve through its knob
values (annotated), the no-defence row a star, and the matched-utility region is shaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness.methods import format_value  # noqa: E402
from benchmarks.harness.scoring import Row  # noqa: E402
from benchmarks.harness.tradeoff import efficacy, utility  # noqa: E402

__all__ = ["tradeoff_plot"]

_MARKERS = "osD^vP<>Xh"
_AXES = {
    "generate": ("Forget efficacy: 1 - forget ROUGE-L (higher = forgotten)",
                 "Utility: neighbour/retain ROUGE-L"),
    "detect": ("Forget detection rate (oracle answers)", "1 - flag rate on neighbour/retain"),
}


def tradeoff_plot(rows: Sequence[Row], path: Path, *, title: str, mode: str, reference: str,
                  points: float) -> Path:
    """Draw and save the figure; returns ``path``."""
    figure, axes = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    base = next((utility(r) for r in rows if r.method == reference), None)
    if base is not None:
        axes.axhspan(base - points / 100, 1.03, color="tab:green", alpha=0.12,
                     label=f"matched utility (>= no defence - {points:g} pts)")
    for index, method in enumerate(dict.fromkeys(r.method for r in rows)):
        curve = [r for r in rows if r.method == method
                 and efficacy(r) is not None and utility(r) is not None]
        if not curve:
            continue
        xs = [efficacy(r) or 0.0 for r in curve]
        ys = [utility(r) or 0.0 for r in curve]
        marker = "*" if method == reference else _MARKERS[index % len(_MARKERS)]
        size = 14 if method == reference else 6
        axes.plot(xs, ys, marker=marker, markersize=size, linestyle="-" if len(curve) > 1 else "",
                  label=method)
        for row, x, y in zip(curve, xs, ys, strict=True):
            if row.value is not None:
                axes.annotate(format_value(row.value), (x, y), textcoords="offset points",
                              xytext=(4, 4), fontsize=7)
    x_label, y_label = _AXES[mode]
    axes.set(xlabel=x_label, ylabel=y_label, title=title, xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
