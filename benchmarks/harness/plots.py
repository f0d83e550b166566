"""PNG trade-off plots (matplotlib, Agg backend): forget efficacy vs utility per method.

One figure per dataset: every method is a point, a swept method a curve through its knob
values (annotated), each reference row (no defence; another engine's original model) a star,
and the matched-utility region of each reference is marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness.methods import format_value  # noqa: E402
from benchmarks.harness.scoring import Row  # noqa: E402
from benchmarks.harness.tradeoff import efficacy, utility  # noqa: E402

__all__ = ["tradeoff_plot"]

_MARKERS = "osD^vP<>Xhdp"
_COLOURS = plt.get_cmap("tab20").colors
_AXES = {
    "generate": ("Forget efficacy: 1 - forget ROUGE-L (higher = forgotten)",
                 "Utility: mean of neighbour/retain ROUGE-L and answer rate"),
    "detect": ("Forget detection rate (oracle answers)", "1 - flag rate on neighbour/retain"),
}


def tradeoff_plot(rows: Sequence[Row], path: Path, *, title: str, mode: str,
                  references: Mapping[str, str], points: float) -> Path:
    """Draw and save the figure; returns ``path``.

    ``references`` maps each method to its reference row (see ``BenchConfig.references``):
    reference rows are stars, the first one's matched band is shaded, any other's is a dashed
    line, and rows matched against another reference are drawn dashed.
    """
    figure, axes = plt.subplots(figsize=(8.5, 6), dpi=110)
    methods = list(dict.fromkeys(r.method for r in rows))
    own = [m for m in methods if references.get(m) == m]
    for number, ref in enumerate(own):
        base = next((utility(r) for r in rows if r.method == ref), None)
        if base is None:
            continue
        floor = base - points / 100
        if number == 0:
            axes.axhspan(floor, 1.03, color="tab:green", alpha=0.12,
                         label=f"matched utility (>= {ref} - {points:g} pts)")
        else:
            axes.axhline(floor, color="tab:grey", linestyle="--", linewidth=1,
                         label=f"matched utility vs {ref}")
    for index, method in enumerate(methods):
        curve = [r for r in rows if r.method == method
                 and efficacy(r) is not None and utility(r) is not None]
        if not curve:
            continue
        xs = [efficacy(r) or 0.0 for r in curve]
        ys = [utility(r) or 0.0 for r in curve]
        is_reference = method in own
        line = "--" if own and references.get(method) not in (method, own[0]) else "-"
        axes.plot(xs, ys, marker="*" if is_reference else _MARKERS[index % len(_MARKERS)],
                  markersize=14 if is_reference else 6, color=_COLOURS[index % len(_COLOURS)],
                  linestyle=line if len(curve) > 1 else "", label=method)
        for row, x, y in zip(curve, xs, ys, strict=True):
            if row.value is not None:
                axes.annotate(format_value(row.value), (x, y), textcoords="offset points",
                              xytext=(4, 4), fontsize=7)
    x_label, y_label = _AXES[mode]
    axes.set(xlabel=x_label, ylabel=y_label, title=title, xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
