"""Input-guard detection quality on TOFU and the latency each guard adds.

    python -m benchmarks.guards [--splits forget01 forget05 forget10] [--out benchmarks/results/guards.json]
    python -m benchmarks.guards --canonical-only

For each TOFU split, a policy forgets the split's fictitious authors (built from the split's
QA pairs). Positives are the *paraphrased* forget questions (never used to build the policy);
negatives are held-out retain questions plus the real-authors and world-facts neighbours.
Reports ROC AUC, TPR at 1 % FPR, and recall / neighbour FPR at each guard's own threshold, and
the p50/p99 latency of each guard on one request next to one MiniLM embedding of it (the guards
share the embedder's cache, so a guard after the first pays only what it adds: the scope check's
row is its cost on top of the detector's embedding), and the
cost of the canonicalisation stage (:mod:`filters.canonical`) on a plain 50-word request (target
<= 0.5 ms p50; ``--canonical-only`` measures just that).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from benchmarks.datasets.tofu import load_tofu
from benchmarks.proxy_overhead import percentile
from benchmarks.provenance import provenance
from proxy.core.config import ForgetTargetConfig, PolicyConfig, QAExample
from proxy.policy import compile_policy

N_RETAIN_EXAMPLES = 300
N_NEGATIVES = 600


def _policy(split: str, data_dir: str | None) -> tuple[PolicyConfig, list[str], list[str], dict[str, str]]:
    bench = load_tofu(data_dir, split=split)
    targets = [
        ForgetTargetConfig(id=t.id, name=t.name, aliases=list(t.aliases),
                           questions=[QAExample(question=q, answer=a)
                                      for q, a in zip(t.questions, t.answers, strict=True)])
        for t in bench.targets
    ]
    retain = [p.question for p in bench.retain_probes]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(retain))
    examples = [QAExample(question=retain[i]) for i in order[:N_RETAIN_EXAMPLES]]
    negatives = [retain[i] for i in order[N_RETAIN_EXAMPLES:N_RETAIN_EXAMPLES + N_NEGATIVES]]
    negatives += [p.question for p in bench.neighbour_probes]
    positives = [p.paraphrased_question or p.question for p in bench.forget_probes]
    policy = PolicyConfig(
        forget=targets, retain=examples,
        methods=[{"type": "input_detector", "aliases": False}, {"type": "input_classifier"},  # type: ignore[list-item]
                 {"type": "scope"}],
    )
    return policy, positives, negatives, bench.files


def _quality(scores_pos: list[float], scores_neg: list[float], threshold: float) -> dict[str, float]:
    labels = [1] * len(scores_pos) + [0] * len(scores_neg)
    scores = scores_pos + scores_neg
    fpr, tpr, _ = roc_curve(labels, scores)
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_1pct_fpr": float(np.interp(0.01, fpr, tpr)),
        "recall_at_threshold": float(np.mean([s >= threshold for s in scores_pos])),
        "fpr_at_threshold": float(np.mean([s >= threshold for s in scores_neg])),
        "threshold": threshold,
        "n_positive": len(scores_pos),
        "n_negative": len(scores_neg),
    }


def evaluate_split(split: str, data_dir: str | None, state_dir: Path) -> dict[str, Any]:
    """Detection quality and latency of each input guard for one TOFU split."""
    policy, positives, negatives, files = _policy(split, data_dir)
    runtime = compile_policy(split, policy, base_dir=Path.cwd(), state_dir=state_dir)
    out: dict[str, Any] = {"files": files, "guards": {}}
    for guard in runtime.input_guards:
        guard.check_input([{"role": "user", "content": "warm-up"}])
        verdicts = {
            label: [guard.check_input([{"role": "user", "content": q}]) for q in questions]
            for label, questions in (("pos", positives), ("neg", negatives))
        }
        threshold = verdicts["pos"][0].threshold
        latencies = [v.elapsed_ms for v in verdicts["pos"] + verdicts["neg"]]
        out["guards"][guard.name] = {
            **_quality([v.score for v in verdicts["pos"]], [v.score for v in verdicts["neg"]], threshold),
            "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        }
    out["describe"] = runtime.describe()
    return out


def embedding_ms(texts: list[str]) -> float:
    """Median time of one MiniLM embedding of one request."""
    from filters.embedder import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.embed(texts[:4])
    times = []
    for text in texts[:100]:
        started = time.perf_counter()
        embedder.embed([text])
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50)


def fifty_word_requests(questions: list[str], n: int = 200) -> list[str]:
    """``n`` plain English requests of exactly 50 words, each held-out questions joined."""
    out, words = [], " ".join(questions).split()
    for i in range(n):
        start = (i * 37) % max(1, len(words) - 50)
        out.append(" ".join(words[start : start + 50]))
    return out


def canonicalisation_ms(texts: list[str]) -> dict[str, float]:
    """p50/p99 of the canonicalisation stage on one request: its views
    (:func:`filters.canonical.views`), the tokens of each view and the embedder's text
    (:func:`filters.normalize.unify`), as the guards compute them."""
    from filters.canonical import views
    from filters.normalize import tokenize, unify

    def stage(text: str) -> None:
        for view in views(text):
            tokenize(view.text)
            unify(view.text)

    for text in texts[:20]:
        stage(text)
    times = []
    for text in texts:
        started = time.perf_counter()
        stage(text)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(times, 50), "p99": percentile(times, 99), "n": len(texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description="input-guard quality and latency on TOFU")
    parser.add_argument("--splits", nargs="+", default=["forget01", "forget05", "forget10"])
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default="benchmarks/results/guards.json")
    parser.add_argument("--canonical-only", action="store_true",
                        help="only the canonicalisation cost (writes guards_canonical.json)")
    args = parser.parse_args()
    started = time.time()
    requests = fifty_word_requests(_policy("forget01", args.data_dir)[2])
    canonical = canonicalisation_ms(requests)
    print(f"canonicalisation of a plain 50-word request: p50 {canonical['p50']:.3f} ms, "
          f"p99 {canonical['p99']:.3f} ms (n={canonical['n']})")
    if args.canonical_only:
        out = Path(args.out).with_name("guards_canonical.json")
        out.write_text(json.dumps({"canonicalisation_ms": canonical,
                                   "provenance": provenance(started)}, indent=2))
        print(f"wrote {out}")
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split in args.splits:
            results[split] = evaluate_split(split, args.data_dir, Path(tmp))
    floor = embedding_ms([q for q in _policy("forget01", args.data_dir)[2]])
    print(f"one MiniLM embedding of a request: p50 {floor:.2f} ms")
    print("| split | guard | AUC | TPR@1%FPR | recall@thr | neighbour FPR@thr | p50 ms | p99 ms | p50 / embedding |")
    print("|---|---|---|---|---|---|---|---|---|")
    for split, row in results.items():
        for name, g in row["guards"].items():
            print(f"| {split} | {name} | {g['auc']:.3f} | {g['tpr_at_1pct_fpr']:.3f} | "
                  f"{g['recall_at_threshold']:.3f} | {g['fpr_at_threshold']:.3f} | "
                  f"{g['latency_ms']['p50']:.2f} | {g['latency_ms']['p99']:.2f} | "
                  f"{g['latency_ms']['p50'] / floor:.2f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "embedding_ms_p50": floor,
                               "canonicalisation_ms": canonical,
                               "provenance": provenance(started)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
