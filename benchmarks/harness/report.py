"""The run's report: ``report.json`` (every number with its provenance), ``items.jsonl``,
``report.md``, one PNG per dataset and a self-contained ``report.html`` (PNGs as base64).

Every rate (a share of probes) is shown with its Wilson 95 % interval, ``90.8 [88.9, 92.4]``;
each dataset also gets rows per level and attack type where its probes carry them, and says
how many must-answer candidates were left out for naming a forget target.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.harness.config import BenchConfig
from benchmarks.harness.evaluate import DatasetResult
from benchmarks.harness.plots import tradeoff_plot
from benchmarks.harness.scoring import METRIC_INFO, Row
from benchmarks.harness.tradeoff import (
    Matched, answer_rate, efficacy_source, match_utility, rouge_utility,
)

__all__ = ["build_report", "render_html", "render_markdown", "write_report"]

Table = tuple[list[str], list[list[str]]]
_ARROW = {"lower": "↓", "higher": "↑"}
_TIERS = ("Tiers: T = text only (any endpoint), L = log-probs of a given continuation. "
          "Rates (%) carry their Wilson 95 % interval [low, high].")


def _percent(value: float, interval: tuple[float, float] | None = None) -> str:
    text = f"{100 * value:.1f}"
    if interval is None:
        return text
    return f"{text} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _cell(name: str, row: Row) -> str:
    if name not in row.metrics:
        return "–"
    value = row.metrics[name]
    return _percent(value, row.interval(name)) if METRIC_INFO[name].unit == "%" else f"{value:.1f}"


def _metric_columns(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
    """The metrics any of ``rows`` has (METRIC_INFO order) and their column headers."""
    names = [n for n in METRIC_INFO if any(n in r.metrics for r in rows)]
    return names, [
        f"{METRIC_INFO[n].title} {_ARROW[METRIC_INFO[n].better]} [{METRIC_INFO[n].tier}]"
        + ("" if METRIC_INFO[n].unit == "%" else f" ({METRIC_INFO[n].unit})") for n in names]


def _rows_table(rows: Sequence[Row]) -> Table:
    names, columns = _metric_columns(rows)
    headers = ["Method", "Knob", *columns, "Matched utility", "Wall s"]
    trained = any(r.training for r in rows)
    headers += ["Train s"] if trained else []
    body = [[r.label, f"{r.knob}" if r.knob else "–"] + [_cell(n, r) for n in names]
            + ["–" if r.matched is None else "yes" if r.matched else "no", f"{r.wall_s:.1f}"]
            + ([_training_cell(r)] if trained else [])
            for r in rows]
    return headers, body


def _groups_table(groups: Sequence[Row]) -> Table:
    """Rows per level / attack type, grouped by group (first-seen order), then variant."""
    names, columns = _metric_columns(groups)
    order = list(dict.fromkeys(g.group for g in groups))
    ranked = sorted(groups, key=lambda g: order.index(g.group))
    return (["Group", "Method", *columns],
            [[str(g.group), g.label] + [_cell(n, g) for n in names] for g in ranked])


def _training_cell(row: Row) -> str:
    """A weight-based row's training wall time and device (shared by its knob values)."""
    if not row.training:
        return "–"
    return f"{float(row.training['wall_s']):.1f} ({row.training['device']})"


def _efficacy_interval(row: Row) -> tuple[float, float] | None:
    """The 95 % interval of a row's forget efficacy when it is read from a rate."""
    source = efficacy_source(row)
    interval = row.interval(source[0]) if source else None
    if source is None or interval is None:
        return None
    return (1.0 - interval[1], 1.0 - interval[0]) if source[1] else interval


def _matched_table(matched: Sequence[Matched], rows: Sequence[Row]) -> Table:
    def pct(value: float | None, interval: tuple[float, float] | None = None) -> str:
        return "–" if value is None else _percent(value, interval)

    by_label = {(r.method, r.label): r for r in rows}
    headers = ["Method", "Row", "Within band", "ROUGE utility ↑", "Answer rate ↑",
               "Utility ↑", "Forget efficacy ↑"]
    body = []
    for m in matched:
        row = by_label[(m.method, m.label)]
        body.append([m.method, m.label, "yes" if m.matched else "no", pct(rouge_utility(row)),
                     pct(answer_rate(row)), pct(m.utility),
                     pct(m.efficacy, _efficacy_interval(row))])
    return headers, body


def _markdown_table(table: Table) -> str:
    headers, body = table
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def _html_table(table: Table) -> str:
    headers, body = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                   for cells in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _dataset_entry(result: DatasetResult, config: BenchConfig, out_dir: Path) -> dict[str, Any]:
    spec = result.spec
    references = config.references
    matched = match_utility(result.rows, config.reference.name, config.matched_utility_points,
                            references)
    plot = tradeoff_plot(result.rows, out_dir / f"tradeoff_{spec.key}.png",
                         title=f"{spec.key} ({spec.mode}) — {config.model_name}",
                         mode=spec.mode, references=references,
                         points=config.matched_utility_points)
    exclusion = result.exclusion
    return {
        "name": spec.name, "label": spec.key, "mode": spec.mode,
        "spec": spec.model_dump(mode="json"),
        "wall_s": round(result.wall_s, 1),
        "files_sha256": dict(result.benchmark.files),
        "loader_params": dict(result.benchmark.params),
        "sizes": {**result.split.counts(),
                  "scored": {k: len(v) for k, v in result.scored.items()},
                  "scored_ids": {k: [p.id for p in v] for k, v in result.scored.items()},
                  "excluded": exclusion.counts() if exclusion else {},
                  "excluded_ids": {k: {p.id: list(hits) for p, hits in v}
                                   for k, v in exclusion.excluded.items()} if exclusion else {}},
        "rows": [r.to_dict() for r in result.rows],
        "groups": [g.to_dict() for g in result.groups],
        "matched_utility": [m.__dict__ for m in matched], "plot": plot.name,
        "cache_files": result.cache_files,
        "tables": {"rows": _rows_table(result.rows),
                   "matched": _matched_table(matched, result.rows),
                   "groups": _groups_table(result.groups) if result.groups else None},
    }


def build_report(results: Sequence[DatasetResult], config: BenchConfig, out_dir: Path,
                 provenance: dict[str, Any]) -> dict[str, Any]:
    """The JSON report (also draws the PNGs into ``out_dir``)."""
    return {"bench": config.name, "provenance": provenance,
            "config": config.model_dump(mode="json"),
            "datasets": [_dataset_entry(r, config, out_dir) for r in results]}


def _sizes_line(entry: dict[str, Any]) -> str:
    sizes, spec = entry["sizes"], entry["spec"]
    parts = [f"{kind} {sizes['scored'][kind]} of {sizes['candidates'][kind]} candidates"
             for kind in sizes["scored"] if sizes["candidates"][kind]]
    known = spec["known_min_rouge"]
    rule = (f"scored = probes the no-defence model answers (ROUGE-L recall ≥ {known})"
            if known is not None and entry["mode"] == "generate" else "all candidates scored")
    excluded = sizes.get("excluded", {})
    left_out = "; ".join(f"{kind} {c['excluded']} of {c['candidates']}"
                         for kind, c in excluded.items() if c["candidates"])
    hygiene = (f" Left out of scoring for naming a forget target (name or alias, in the "
               f"question or gold answer): {left_out or 'none checked'}." if excluded else "")
    return (f"Scored probes: {', '.join(parts)}; {rule} (MCQ not filtered).{hygiene} "
            f"Dataset wall time {entry['wall_s']:.0f} s.")


class _Section(NamedTuple):
    title: str
    sizes: str
    rows: Table
    matched: Table
    groups: Table | None
    plot: str


def _sections(report: dict[str, Any]) -> list[_Section]:
    prov = report["provenance"]
    out = []
    for entry in report["datasets"]:
        label = entry.get("label", entry["name"])
        title = (f"{label} ({entry['mode']}) — engine {prov['engine']}, model "
                 f"{prov['model']['name']}, seed {prov['seed']}, transport {prov['transport']}")
        tables = entry["tables"]
        out.append(_Section(title, _sizes_line(entry), tables["rows"], tables["matched"],
                            tables.get("groups"), entry["plot"]))
    return out


_GROUPS = "By level and attack type (the same answers, scored per group):"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: one labelled table per dataset plus the matched-utility table."""
    prov = report["provenance"]
    lines = [f"# Bench `{report['bench']}`", "",
             f"Run {prov['started_utc']} → {prov['ended_utc']}, wall time "
             f"{prov['wall_time_s']:.0f} s, git {str(prov['git_commit'])[:10]}"
             f"{' (dirty)' if prov['git_dirty'] else ''}. {_TIERS}", ""]
    points = report["config"]["matched_utility_points"]
    for s in _sections(report):
        lines += [f"## {s.title}", "", s.sizes, "", _markdown_table(s.rows), "",
                  f"At matched utility (at most {points:g} points below the row's reference: no "
                  "defence, or the `reference` it names; utility = mean of ROUGE utility and "
                  "answer rate):", "",
                  _markdown_table(s.matched), ""]
        lines += [_GROUPS, "", _markdown_table(s.groups), ""] if s.groups else []
        lines += [f"![trade-off]({s.plot})", ""]
    return "\n".join(lines)


def render_html(report: dict[str, Any], out_dir: Path) -> str:
    """``report.html``: the tables and the plots (embedded), no external resources."""
    parts = [f"<h1>Bench {html.escape(report['bench'])}</h1>",
             f"<p>{html.escape(_TIERS)}</p>"]
    for s in _sections(report):
        image = base64.b64encode((out_dir / s.plot).read_bytes()).decode("ascii")
        parts += [f"<h2>{html.escape(s.title)}</h2>", f"<p>{html.escape(s.sizes)}</p>",
                  _html_table(s.rows), "<h3>At matched utility</h3>", _html_table(s.matched)]
        parts += ([f"<h3>{html.escape(_GROUPS)}</h3>", _html_table(s.groups)]
                  if s.groups else [])
        parts.append(f'<img alt="trade-off {html.escape(s.plot)}" '
                     f'src="data:image/png;base64,{image}">')
    provenance = html.escape(json.dumps(report["provenance"], indent=2))
    parts.append(f"<h2>Provenance</h2><pre>{provenance}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:"
             "collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Bench "
            f"{html.escape(report['bench'])}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


def write_report(report: dict[str, Any], items: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """Write ``report.json``, ``items.jsonl``, ``report.md`` and ``report.html``; returns the
    JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    with (out_dir / "items.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(report, out_dir), encoding="utf-8")
    return path
