"""How the input policy grows with its forget targets: compile time, memory, guard latency, and
the cost of adding and withdrawing one target at run time, one run.

    python -m benchmarks.scaling [--sizes 10 25 100 1000] [--queries 200]
                                 [--out benchmarks/results/scaling.json]

For each size, a synthetic policy (:mod:`benchmarks.synthetic_policy`: detector + classifier)
is compiled cold (a fresh state directory, the embedder's cache of recent texts emptied), as
``unlearn-proxy serve`` compiles it (the embedding worker process included). The run-time
add and withdraw below find that cache as a running server would: holding the policy's texts. Then: the RSS it added (this process and the worker), its
forget items, the input guards' time on one request (all guards in turn, as the pipeline runs
them; unique texts, half of them questions about targets, half not), and a run-time forget
request: the policy compiled again with one new target (what ``POST /admin/forget`` does before
it swaps the runtime in) and checked to block that target's question in its name, then compiled
without it (``DELETE``) and checked no longer to name it. The guard time is what a policy adds to a request beside the proxy's own
overhead (:mod:`benchmarks.proxy_overhead`).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.provenance import provenance, write_report
from benchmarks.proxy_overhead import percentile
from benchmarks.synthetic_policy import RETAIN, synthetic_policy, synthetic_target
from filters.embedder import build_embedder
from proxy.core.config import EmbedderConfig, ForgetTargetConfig, PolicyConfig
from proxy.policy import CompiledPolicy, compile_policy

DEFAULT_SIZES = (10, 25, 100, 1000)
STACKS: dict[str, list[dict[str, Any]]] = {
    "detector+classifier": [{"type": "input_detector"}, {"type": "input_classifier"}],
    "detector+scope": [{"type": "input_detector"}, {"type": "scope", "classifier": False}],
}
"""Input policies to grow: the default pair, and the scope check without the classifier (no
model retrained on the whole policy when one target is added)."""
REFERENCE_SIZE = 25  # the reference: added p50 at 10,000 targets <= 2x this size's


def _rss_mb() -> float:
    process = psutil.Process()
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def _queries(policy: dict[str, Any], count: int, seed: int) -> list[str]:
    """Unique request texts: questions about random targets, and questions about nothing."""
    rng = random.Random(seed)
    names = [t["name"] for t in policy["forget"]]
    about = [f"Could you tell me more about {rng.choice(names)} and their work? (#{i})"
             for i in range(count // 2)]
    other = [f"{rng.choice(RETAIN)} Please answer briefly. (#{i})" for i in range(count - len(about))]
    return about + other


def guard_ms(compiled: CompiledPolicy, texts: list[str]) -> dict[str, float]:
    """The input guards' time on each text, in turn as the pipeline runs them (p50/p99, ms)."""
    times = []
    for text in texts:
        messages = [{"role": "user", "content": text}]
        started = time.perf_counter()
        for guard in compiled.input_guards:
            if guard.check_input(messages).is_block:
                break
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(times, 50), "p99": percentile(times, 99)}


def _blocked_as(compiled: CompiledPolicy, text: str, target_id: str) -> bool:
    """Whether a guard blocks ``text`` naming ``target_id`` (a question about a withdrawn
    target may still be blocked as like the others, but never in its name)."""
    messages = [{"role": "user", "content": text}]
    verdicts = [guard.check_input(messages) for guard in compiled.input_guards]
    return any(v.is_block and v.match is not None and v.match.target_id == target_id
               for v in verdicts)


def measure_size(size: int, queries: int, state_dir: Path,
                 stack: str = "detector+classifier") -> dict[str, Any]:
    """Every figure for a policy of ``size`` synthetic targets guarded by ``stack``."""
    data = synthetic_policy(size, methods=STACKS[stack])
    policy = PolicyConfig.model_validate(data)
    build_embedder(policy.embedder).clear()  # type: ignore[attr-defined]  # a cold compile
    before = _rss_mb()
    compiled = compile_policy("synthetic", policy, base_dir=state_dir, state_dir=state_dir,
                              progress=False)
    rss = _rss_mb() - before
    compiled.input_guards[0].check_input([{"role": "user", "content": "warm-up"}])
    latency = guard_ms(compiled, _queries(data, queries, seed=size))
    new = ForgetTargetConfig.model_validate(synthetic_target(size + 1_000_000))
    started = time.perf_counter()
    added = compile_policy("synthetic", policy, base_dir=state_dir, state_dir=state_dir,
                           extra_targets=[new], progress=False)
    add_s = time.perf_counter() - started
    new_blocked = _blocked_as(added, new.questions[0].question, new.id)
    started = time.perf_counter()
    withdrawn = compile_policy("synthetic", policy, base_dir=state_dir, state_dir=state_dir,
                               progress=False)
    withdraw_s = time.perf_counter() - started
    index = next((g.index for g in compiled.input_guards if hasattr(g, "index")), None)
    items = len(index) if index is not None else None
    return {
        "targets": size, "stack": stack, "compile_s": compiled.compile_s, "rss_added_mb": rss,
        "rss_per_target_kb": rss * 1024 / size, "forget_items": items,
        "guard_ms": latency, "add_one_target_s": add_s, "new_target_blocked": new_blocked,
        "withdraw_one_target_s": withdraw_s,
        "withdrawn_target_unnamed": not _blocked_as(withdrawn, new.questions[0].question, new.id),
        "cache_hits": {"add": added.cache_hits, "withdraw": withdrawn.cache_hits},
    }


def index_search(items: int, queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """Exact and HNSW search over ``items`` clustered unit vectors (nine per cluster, like a
    target's items; random, not MiniLM's): build s, ms per query, top-1 recall of the graph."""
    import numpy as np

    from filters.forget_index import ForgetIndex, ForgetItem

    rng = np.random.default_rng(seed)
    unit = lambda rows: (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    centres = rng.normal(size=(max(items // 9, 1), 384))
    vectors = unit(centres[rng.integers(0, len(centres), items)] + 0.4 * rng.normal(size=(items, 384)))
    rows = [ForgetItem(f"t{i}/chunk/1", f"t{i}", "chunk", "") for i in range(items)]
    probes = unit(vectors[rng.choice(items, queries)] + 0.03 * rng.normal(size=(queries, 384)))
    out: dict[str, Any] = {"items": items}
    top: dict[str, list[str]] = {}
    for kind in ("flat", "hnsw"):
        started = time.perf_counter()
        index = ForgetIndex(rows, vectors, kind=kind)  # type: ignore[arg-type]
        out[f"{kind}_build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        top[kind] = [index.search(probe[None])[0][0][1].id for probe in probes]
        out[f"{kind}_ms_per_query"] = (time.perf_counter() - started) / queries * 1000
    out["hnsw_recall_at_1"] = float(np.mean([a == b for a, b in zip(top["flat"], top["hnsw"], strict=True)]))
    return out


def alias_lookup(sizes: list[int], texts: int = 200) -> list[dict[str, Any]]:
    """The alias table's build time and lookup cost per request text, per target count."""
    from filters.alias_matcher import AliasTable, find_in_views

    out = []
    for size in sizes:
        targets = [ForgetTargetConfig.model_validate(synthetic_target(i)) for i in range(size)]
        started = time.perf_counter()
        table = AliasTable.from_targets(targets)
        build_s = time.perf_counter() - started
        requests = [f"Where did the author of book number {i} grow up, and what did they study?"
                    for i in range(texts)]
        started = time.perf_counter()
        for text in requests:
            find_in_views(table, text)
        out.append({"targets": size, "build_s": build_s,
                    "ms_per_request": (time.perf_counter() - started) / texts * 1000,
                    "finds_a_name": find_in_views(table, f"Where was {targets[-1].name} born?") is not None})
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """One table line per size."""
    results, meta = report["results"], report["provenance"]
    stack = next((r.get("stack") for r in results["sizes"]), None) or "detector+classifier"
    lines = ["# Scaling with forget targets", "", f"Command: `{meta['command']}`  ",
             f"Commit {meta['git_commit']}{' (dirty)' if meta['git_dirty'] else ''}, "
             f"{meta['started_utc']}, {meta['wall_time_s']:.0f} s on {meta['host']['cpus']} CPUs.",
             "", f"Guard ms: the input guards ({stack}) on one unique request, "
             "in process; × ref: its p50 over the "
             f"{REFERENCE_SIZE}-target policy's. Add / withdraw: compiling the policy with / "
             "without one more target, as the forget API does before its swap.", "",
             "| targets | forget items | compile s | RSS added MB | KB per target | guard p50 ms | "
             "guard p99 ms | × ref | add one s | blocked as it | withdraw s | no longer named |",
             "|" + "---|" * 12]
    reference = next((r for r in results["sizes"] if r["targets"] == REFERENCE_SIZE), None)
    for row in results["sizes"]:
        ratio = (f"{row['guard_ms']['p50'] / reference['guard_ms']['p50']:.2f}×"
                 if reference else "–")
        lines.append(
            f"| {row['targets']:,} | {row['forget_items']:,} | {row['compile_s']:.1f} | "
            f"{row['rss_added_mb']:.0f} | {row['rss_per_target_kb']:.0f} | "
            f"{row['guard_ms']['p50']:.2f} | {row['guard_ms']['p99']:.2f} | {ratio} | "
            f"{row['add_one_target_s']:.2f} | {'yes' if row['new_target_blocked'] else 'NO'} | "
            f"{row['withdraw_one_target_s']:.2f} | "
            f"{'yes' if row['withdrawn_target_unnamed'] else 'NO'} |")
    index = results.get("index_search")
    if index:
        lines += ["", f"Index over {index['items']:,} clustered random vectors: exact "
                  f"{index['flat_ms_per_query']:.2f} ms a query (built in {index['flat_build_s']:.1f} s),"
                  f" HNSW {index['hnsw_ms_per_query']:.2f} ms (built in {index['hnsw_build_s']:.0f} s), "
                  f"top-1 recall {index['hnsw_recall_at_1']:.3f} against exact."]
    for row in results.get("alias_lookup", []):
        lines.append(f"Aliases of {row['targets']:,} targets: table built in {row['build_s']:.2f} s,"
                     f" {row['ms_per_request']:.3f} ms a request.")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description="the input policy against its target count")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index-items", type=int, default=0,
                        help="also time exact vs HNSW search over this many vectors")
    parser.add_argument("--alias-sizes", type=int, nargs="*", default=[],
                        help="also time the alias table at these target counts")
    parser.add_argument("--stack", choices=sorted(STACKS), default="detector+classifier",
                        help="the input guards of the synthetic policy")
    parser.add_argument("--out", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    started = time.time()
    if args.sizes:
        build_embedder(EmbedderConfig()).warm_up()  # type: ignore[attr-defined]  # no size's RSS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            rows.append(measure_size(size, args.queries, Path(tmp) / str(size), args.stack))
            print(json.dumps(rows[-1]), flush=True)
    results: dict[str, Any] = {"sizes": rows}
    if args.index_items:
        results["index_search"] = index_search(args.index_items)
    if args.alias_sizes:
        results["alias_lookup"] = alias_lookup(args.alias_sizes)
    command = (f"python -m benchmarks.scaling --stack {args.stack} "
               f"--sizes {' '.join(map(str, args.sizes))} "
               f"--queries {args.queries} --index-items {args.index_items} --alias-sizes "
               f"{' '.join(map(str, args.alias_sizes))}")
    report = {"results": results, "provenance": provenance(started, command=command)}
    write_report(args.out, report, render_markdown(report))


if __name__ == "__main__":
    main()
