"""Detection quality and speed of the local embedding engines on TOFU, in one run.

    python -m benchmarks.embedder_engines [--split forget10] [--out benchmarks/results/embedder_engines.json]

For each engine (torch fp32, ONNX Runtime fp32, ONNX Runtime int8) the TOFU policy of
:mod:`benchmarks.guards` (its forget authors' QA pairs, held-out retain examples) is compiled
afresh, so each calibrates its own thresholds on its own vectors; each input guard then scores
the paraphrased forget questions (positives) and the held-out retain and neighbour questions
(negatives): recall and neighbour false-flag rate at the guard's threshold, AUC and TPR at
1 % FPR (``benchmarks.guards._quality``), and their change from ONNX fp32 in points. int8 may
be the default only when no guard's recall or false-flag rate moves more than
:data:`MAX_SHIFT_POINTS`. Also the engines' vectors against torch's (cosine) and their speed,
measured interleaved: one embedding of a request (p50) and texts per second in batches of 64.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.guards import _policy, _quality
from benchmarks.proxy_overhead import percentile
from benchmarks.provenance import provenance, write_report
from filters.embedder import local_embedder
from proxy.core.config import EmbedderConfig
from proxy.policy import compile_policy

ENGINES = {"torch-fp32": ("torch", "fp32"), "onnx-fp32": ("onnx", "fp32"), "onnx-int8": ("onnx", "int8")}
REFERENCE = "onnx-fp32"
MAX_SHIFT_POINTS = 0.5
SPEED_ROUNDS = 5


def guard_quality(split: str, data_dir: str | None, engine: str, precision: str,
                  state_dir: Path) -> dict[str, Any]:
    """Each input guard's detection figures with the policy's embedder on ``engine``."""
    policy, positives, negatives, _ = _policy(split, data_dir)
    policy = policy.model_copy(update={"embedder": EmbedderConfig(
        engine=engine, precision=precision, worker="thread")})  # type: ignore[arg-type]
    started = time.perf_counter()
    runtime = compile_policy(split, policy, base_dir=Path.cwd(), state_dir=state_dir)
    figures: dict[str, Any] = {"compile_s": time.perf_counter() - started}
    for guard in runtime.input_guards:
        scored = {label: [guard.check_input([{"role": "user", "content": q}]) for q in questions]
                  for label, questions in (("pos", positives), ("neg", negatives))}
        figures[guard.name] = _quality([v.score for v in scored["pos"]],
                                       [v.score for v in scored["neg"]], scored["pos"][0].threshold)
    return figures


def speeds(texts: list[str], names: list[str]) -> dict[str, dict[str, float]]:
    """One embedding (p50 ms) and batches of 64 (texts/s) per engine, rounds interleaved."""
    embedders = {name: local_embedder(engine=ENGINES[name][0], precision=ENGINES[name][1])  # type: ignore[arg-type]
                 for name in names}
    singles: dict[str, list[float]] = {name: [] for name in embedders}
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for embedder in embedders.values():
        embedder.embed(texts[:8])
    for round_ in range(SPEED_ROUNDS):
        chunk = texts[round_ * 64 : (round_ + 1) * 64]
        for name, embedder in embedders.items():
            for text in chunk[:20]:
                started = time.perf_counter()
                embedder.embed([text])
                singles[name].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            embedder.embed(chunk)
            rates[name].append(len(chunk) / (time.perf_counter() - started))
    return {name: {"single_ms_p50": percentile(singles[name], 50),
                   "batched_texts_per_s": float(np.median(rates[name]))} for name in embedders}


def agreement(texts: list[str], names: list[str]) -> dict[str, dict[str, float]]:
    """Cosine of each engine's rows with torch's (with ONNX fp32's without torch), over ``texts``."""
    rows = {name: local_embedder(engine=ENGINES[name][0], precision=ENGINES[name][1]).embed(texts)  # type: ignore[arg-type]
            for name in names}
    reference = rows.get("torch-fp32", rows[REFERENCE])
    cosines = {name: (r * reference).sum(axis=1) for name, r in rows.items()}
    return {name: {"min": float(c.min()), "mean": float(c.mean())} for name, c in cosines.items()}


def shifts(quality: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each engine's recall and false-flag change from :data:`REFERENCE`, in points, per guard."""
    reference = quality[REFERENCE]
    out: dict[str, dict[str, float]] = {}
    for name, figures in quality.items():
        for guard, g in figures.items():
            if isinstance(g, dict):
                out.setdefault(name, {})[f"{guard}.recall_points"] = \
                    100 * (g["recall_at_threshold"] - reference[guard]["recall_at_threshold"])
                out[name][f"{guard}.fpr_points"] = \
                    100 * (g["fpr_at_threshold"] - reference[guard]["fpr_at_threshold"])
    return out


def render_markdown(report: dict[str, Any]) -> str:
    results, meta = report["results"], report["provenance"]
    lines = ["# Embedding engines", "",
             f"Command: `{meta['command']}`  ",
             f"Commit {meta['git_commit']}{' (dirty)' if meta['git_dirty'] else ''}, "
             f"{meta['started_utc']}, {meta['wall_time_s']:.0f} s on {meta['host']['cpus']} CPUs.",
             "", "| engine | guard | recall | false flags | Δ recall (pts) | Δ false flags (pts) "
             "| AUC | TPR@1%FPR | compile s |", "|" + "---|" * 9]
    for name, figures in results["quality"].items():
        for guard, g in figures.items():
            if isinstance(g, dict):
                shift = results["shifts"][name]
                lines.append(
                    f"| {name} | {guard} | {g['recall_at_threshold']:.3f} | "
                    f"{g['fpr_at_threshold']:.3f} | {shift[f'{guard}.recall_points']:+.2f} | "
                    f"{shift[f'{guard}.fpr_points']:+.2f} | {g['auc']:.4f} | "
                    f"{g['tpr_at_1pct_fpr']:.3f} | {figures['compile_s']:.0f} |")
    lines += ["", "| engine | cosine with torch (min / mean) | one embedding p50 ms | "
              "texts/s in batches of 64 |", "|---|---|---|---|"]
    for name, speed in results["speed"].items():
        cos = results["agreement"][name]
        lines.append(f"| {name} | {cos['min']:.4f} / {cos['mean']:.4f} | "
                     f"{speed['single_ms_p50']:.2f} | {speed['batched_texts_per_s']:.0f} |")
    within = "within" if results["int8_within_limit"] else "NOT within"
    worse = "no" if results["int8_no_worse_than_limit"] else "some"
    lines += ["", f"int8 is {within} {MAX_SHIFT_POINTS} points of fp32 on every guard's recall "
              f"and false-flag rate (either way); {worse} guard loses more than "
              f"{MAX_SHIFT_POINTS} points of recall or gains more than {MAX_SHIFT_POINTS} points "
              "of false flags.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="embedding engines: detection quality and speed")
    parser.add_argument("--split", default="forget10")
    parser.add_argument("--data-dir")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--out", default="benchmarks/results/embedder_engines.json")
    args = parser.parse_args()
    names = list(dict.fromkeys([REFERENCE, *args.engines]))
    started = time.time()
    quality = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            engine, precision = ENGINES[name]
            quality[name] = guard_quality(args.split, args.data_dir, engine, precision,
                                          Path(tmp) / name)
            print(name, json.dumps(quality[name]))
    _, positives, negatives, _ = _policy(args.split, args.data_dir)
    texts = positives + negatives
    moved = shifts(quality)
    int8 = moved.get("onnx-int8", {})
    results = {"quality": quality, "shifts": moved, "agreement": agreement(texts, names),
               "speed": speeds(texts, names),
               "int8_within_limit": all(abs(v) <= MAX_SHIFT_POINTS for v in int8.values()),
               "int8_no_worse_than_limit": all(
                   (v >= -MAX_SHIFT_POINTS) if key.endswith("recall_points")
                   else (v <= MAX_SHIFT_POINTS) for key, v in int8.items())}
    report = {"results": results, "provenance": provenance(
        started, split=args.split, engines=names,
        command=f"python -m benchmarks.embedder_engines --split {args.split} --engines {' '.join(names)}")}
    write_report(args.out, report, render_markdown(report))


if __name__ == "__main__":
    main()
