"""What ICUL costs per request: added prompt tokens and latency, on the embedded llama.cpp model.

    python -m benchmarks.icul_overhead [--k 2 4 8] [--requests 20] [--data-dir D] [--out PATH]

A policy forgets the ten TOFU forget05 authors, with all 200 of their QA pairs as example
questions and the first 40 retain95 pairs as retain examples, by ICUL with k forget and s = k
retain demonstrations (Pawelczyk et al. 2023; retain demos chosen by ERASE). Each request is a
TOFU paraphrase of a forget question, ``Question: …\\nAnswer:``, sent as a non-streaming greedy
completion (max_tokens 16) through the server's path (``Pipeline.answer``).
Every ICUL request directly follows the same request without a policy, so the pair sees the
same load and llama.cpp's prompt cache never carries demonstrations from one ICUL request to
the next; each k gets its own questions, so no query embedding comes from the embedder's cache.
Writes ``benchmarks/results/icul_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.datasets.base import Benchmark, Probe
from benchmarks.datasets.tofu import load_tofu
from benchmarks.errors import BenchmarkError
from benchmarks.provenance import provenance
from benchmarks.proxy_overhead import percentile
from proxy.backends import build_backend
from proxy.core.types import GenerationParams
from proxy.core.embedded import embedded_gguf_sha256
from proxy.core.config import ForgetTargetConfig, ICULConfig, LlamaCppModelConfig, PolicyConfig
from proxy.core.config import QAExample
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime, Request
from proxy.policy import compile_policy

MODEL = "gemma"
SPLIT = "forget05"
N_RETAIN = 40
QUERY = "Question: {}\nAnswer:"
PARAMS = GenerationParams(max_tokens=16, temperature=0)
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "icul_overhead.json"


def tofu_icul_policy(
    benchmark: Benchmark, given: Sequence[Probe], *, k: int, s: int
) -> PolicyConfig:
    """Forget the benchmark's targets, with ``given`` as their example questions, by ICUL(k, s).

    Retain examples are the first 40 retain probes; completion prompts go verbatim after the
    demonstrations (they are already ``Question: …\\nAnswer:``).
    """
    targets = [
        ForgetTargetConfig(
            id=t.id, name=t.name, aliases=list(t.aliases),
            questions=[QAExample(question=p.question, answer=p.answer)
                       for p in given if p.target_id == t.id],
        )
        for t in benchmark.targets
    ]
    retain = [QAExample(question=p.question, answer=p.answer)
              for p in benchmark.retain_probes[:N_RETAIN]]
    icul = ICULConfig(type="icul", k=k, s=s, completion_query="verbatim")
    return PolicyConfig(forget=targets, retain=retain, methods=[icul])


@dataclass(frozen=True)
class Sample:
    """One request: wall time (input side + generation), input-side time, token counts."""

    total_ms: float
    input_ms: float
    prompt_tokens: int
    completion_tokens: int


async def _timed(pipeline: Pipeline, request: Request, policy: str | None) -> Sample:
    started = time.perf_counter()
    reply = await pipeline.answer(request, policy)
    total_ms = (time.perf_counter() - started) * 1000
    usage = reply.usage
    return Sample(total_ms, reply.decision.guard_ms, usage.prompt_tokens, usage.completion_tokens)


async def _run(
    pipeline: Pipeline, schedule: Sequence[Sequence[Probe]], ks: Sequence[int]
) -> dict[int, list[tuple[Sample, Sample]]]:
    """``(without, with ICUL)`` pairs per k; ``schedule[r][j]`` is round r's query for ``ks[j]``.

    Round 0 is an unrecorded warm-up. Closes the pipeline's backends.
    """
    pairs: dict[int, list[tuple[Sample, Sample]]] = {k: [] for k in ks}
    try:
        for index, round_probes in enumerate(schedule):
            for k, probe in zip(ks, round_probes, strict=True):
                prompt = QUERY.format(probe.paraphrased_question)
                request = Request("completion", MODEL, [], PARAMS, probe.id, prompt=prompt)
                plain = await _timed(pipeline, request, None)
                icul = await _timed(pipeline, request, f"k{k}")
                if index:
                    pairs[k].append((plain, icul))
    finally:
        for backend in pipeline.backends.values():
            await backend.aclose()
    return pairs


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "p50": percentile(list(values), 50),
            "p90": percentile(list(values), 90)}


def _both(pairs: Sequence[tuple[Sample, Sample]], field: str) -> dict[str, dict[str, float]]:
    return {"without": _stats([getattr(plain, field) for plain, _ in pairs]),
            "with_icul": _stats([getattr(icul, field) for _, icul in pairs])}


def summarize(k: int, pairs: Sequence[tuple[Sample, Sample]]) -> dict[str, Any]:
    """Tokens, input-side time and latency without and with ICUL, and the paired differences."""
    added_tokens = [icul.prompt_tokens - plain.prompt_tokens for plain, icul in pairs]
    added_ms = [icul.total_ms - plain.total_ms for plain, icul in pairs]
    return {
        "k": k, "s": k, "requests": len(pairs),
        "prompt_tokens": _both(pairs, "prompt_tokens"),
        "added_prompt_tokens": _stats(added_tokens),
        "completion_tokens": _both(pairs, "completion_tokens"),
        "input_side_ms": _both(pairs, "input_ms"),
        "latency_ms": _both(pairs, "total_ms"),
        "added_latency_ms": _stats(added_ms),
        "added_ms_per_added_token": statistics.median(added_ms) / statistics.fmean(added_tokens),
    }


def measure(ks: Sequence[int], requests: int, data_dir: str | None) -> dict[str, Any]:
    """Compile one policy per k, run the paired requests, and summarise each k."""
    benchmark = load_tofu(data_dir, split=SPLIT)
    probes = benchmark.forget_probes
    needed = (requests + 1) * len(ks)
    if needed > len(probes):
        raise BenchmarkError(f"{requests} requests for {len(ks)} values of k need {needed} "
                             f"distinct questions; TOFU {SPLIT} has {len(probes)}")
    schedule = [probes[r * len(ks):(r + 1) * len(ks)] for r in range(requests + 1)]
    policies = {k: tofu_icul_policy(benchmark, probes, k=k, s=k) for k in ks}
    model_cfg = LlamaCppModelConfig(backend="llama_cpp")
    backend = build_backend(MODEL, model_cfg)
    with tempfile.TemporaryDirectory() as state_dir:
        runtimes: dict[str, PolicyRuntime] = {
            f"k{k}": compile_policy(
                f"k{k}", policy, base_dir=Path.cwd(), state_dir=Path(state_dir)
            )
            for k, policy in policies.items()
        }
        pipeline = Pipeline(backends={MODEL: backend}, policies=runtimes, metrics=Metrics(),
                            store=None)
        pairs = asyncio.run(_run(pipeline, schedule, ks))
    return {
        "results": [summarize(k, pairs[k]) for k in ks],
        "setup": {
            "engine": "llama_cpp", "model": model_cfg.model_dump(mode="json"),
            "model_sha256": embedded_gguf_sha256(), "request_kind": "completion",
            "params": {"max_tokens": PARAMS.max_tokens, "temperature": PARAMS.temperature},
            "dataset": {"name": "tofu", "split": SPLIT, "files": benchmark.files},
            "query": "paraphrased_question",
            "item_ids": [[p.id for p in row] for row in schedule[1:]],
            "policy_sha256": {f"k{k}": hashlib.sha256(p.model_dump_json().encode()).hexdigest()
                              for k, p in policies.items()},
        },
    }


_HEADER = (
    "      |   prompt tokens    | input ms p50 | latency ms p50 |   added ms    | ms per\n"
    " k  s |  w/o  ICUL  added  |  w/o   ICUL  |   w/o    ICUL  |   p50    p90  | +token"
)
_ROW = ("{k:>2} {s:>2} | {tw:>4.0f} {ti:>5.0f} {ta:>6.0f}  | {iw:>4.1f} {ii:>6.1f}  | {lw:>6.0f} "
        "{li:>7.0f}  | {a50:>5.0f} {a90:>6.0f}  | {per:>5.2f}")


def print_table(results: Sequence[dict[str, Any]]) -> None:
    """One line per k: prompt tokens, input-side and total latency (p50), added latency."""
    print(_HEADER)
    for r in results:
        tokens, inputs, latency = r["prompt_tokens"], r["input_side_ms"], r["latency_ms"]
        print(_ROW.format(
            k=r["k"], s=r["s"], tw=tokens["without"]["mean"], ti=tokens["with_icul"]["mean"],
            ta=r["added_prompt_tokens"]["mean"], iw=inputs["without"]["p50"],
            ii=inputs["with_icul"]["p50"], lw=latency["without"]["p50"],
            li=latency["with_icul"]["p50"], a50=r["added_latency_ms"]["p50"],
            a90=r["added_latency_ms"]["p90"], per=r["added_ms_per_added_token"],
        ))


def main() -> None:
    parser = argparse.ArgumentParser(description="prompt tokens and latency that ICUL adds")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS_PATH))
    args = parser.parse_args()
    started = time.time()
    summary = measure(args.k, args.requests, args.data_dir)
    print_table(summary["results"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"summary": summary["results"], "provenance": provenance(started, **summary["setup"])}
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
