"""Latency the proxy adds with one client: direct vs proxied, with and without a policy, one run.

    python -m benchmarks.proxy_overhead [--requests 300] [--targets proxy proxy+policy proxy+policy+torch]
                                        [--out benchmarks/results/proxy_overhead.json]

Starts a stub upstream (``benchmarks.stub_upstream``, 0 ms latency) and one unlearn-proxy per
target (:mod:`benchmarks.targets`: no policy; the input policy, detector + classifier, on the
default ONNX Runtime engine, fp32; the same at int8; the same on torch), all real processes on
loopback, then sends
rounds of one request direct and one through each proxy with one client, every round a new
text (no embedding-cache hits), and after each round embeds that text once in this process on
each engine (ONNX fp32, the default; ONNX int8; torch), one thread, as the proxies' workers do
(the *floor*). Added latency is the proxied minus the direct time of the same round; its p50
over the default engine's floor p50 says how much of what a policy adds is the one embedding. Targets: no policy added p50 <= 1 ms; the input
policy's <= 6 ms and within 1.5x of one ONNX embedding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks.processes import free_port, proxy_server, python_server
from benchmarks.provenance import provenance

DEFAULT_TARGETS = ("proxy", "proxy+policy", "proxy+policy+int8", "proxy+policy+torch")
WARMUP = 20
FLOORS = {"onnx": ("onnx", "fp32"), "onnx-int8": ("onnx", "int8"), "torch": ("torch", "fp32")}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _timed_post(client: httpx.Client, url: str, text: str) -> float:
    body = {"model": "stub", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    client.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _floor_embedders() -> dict[str, Any]:
    """The floor's embedders, one thread each (torch's pinned, as in the worker)."""
    from filters.embedder import LocalEmbedder, local_embedder

    embedders = {name: local_embedder(engine=engine, precision=precision)  # type: ignore[arg-type]
                 for name, (engine, precision) in FLOORS.items()}
    for embedder in embedders.values():
        if isinstance(embedder, LocalEmbedder):
            embedder.pin_threads()
        embedder.embed(["warm-up"])
    return embedders


def _timed_embed(embedder: Any, text: str) -> float:
    started = time.perf_counter()
    embedder.embed([text])
    return (time.perf_counter() - started) * 1000


def _summary(times: dict[str, list[float]], floors: dict[str, list[float]]) -> dict[str, Any]:
    direct = times["direct"]
    out: dict[str, Any] = {"direct_ms": {"p50": percentile(direct, 50), "p99": percentile(direct, 99)},
                           "floor_ms": {e: {"p50": percentile(f, 50)} for e, f in floors.items()},
                           "targets": {}}
    for name, proxied in times.items():
        if name == "direct":
            continue
        added = [p - d for p, d in zip(proxied, direct, strict=True)]
        out["targets"][name] = {
            "proxied_ms": {"p50": percentile(proxied, 50), "p99": percentile(proxied, 99)},
            "added_ms": {"p50": statistics.median(added), "p99": percentile(added, 99)},
            "added_p50_over_onnx_embedding": statistics.median(added) / percentile(floors["onnx"], 50),
            "added_p50_over_onnx_int8_embedding":
                statistics.median(added) / percentile(floors["onnx-int8"], 50),
        }
    return out


def measure(requests: int, targets: tuple[str, ...] = DEFAULT_TARGETS) -> dict[str, Any]:
    """Run the comparison; returns the summary dict."""
    from benchmarks.targets import proxy_config, request_text

    embedders = _floor_embedders() if any("policy" in t for t in targets) else {}
    upstream_port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(upstream_port), "--latency-ms", "0"]
    times: dict[str, list[float]] = {"direct": [], **{t: [] for t in targets}}
    floors: dict[str, list[float]] = {engine: [] for engine in embedders}
    with tempfile.TemporaryDirectory() as tmp, python_server(stub, port=upstream_port) as (up, _), \
            ExitStack() as stack, httpx.Client() as client:
        urls = {"direct": up, **{t: stack.enter_context(proxy_server(
            proxy_config(Path(tmp), up, t), extra_args=["--no-watch"]))[0] for t in targets}}
        for i in range(requests + WARMUP):
            text = request_text(i, "overhead")
            round_ = {name: _timed_post(client, url, text) for name, url in urls.items()}
            embedded = {engine: _timed_embed(e, text) for engine, e in embedders.items()}
            if i >= WARMUP:
                for name, ms in round_.items():
                    times[name].append(ms)
                for engine, ms in embedded.items():
                    floors[engine].append(ms)
    return {"requests": requests, **_summary(times, floors),
            "targets_ms": {"no_policy_added_p50": 1.0, "policy_added_p50": 6.0,
                           "policy_added_p50_over_onnx_embedding": 1.5}}


def main() -> None:
    parser = argparse.ArgumentParser(description="latency the proxy adds, one client")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    parser.add_argument("--out", default="benchmarks/results/proxy_overhead.json")
    args = parser.parse_args()
    started = time.time()
    summary = measure(args.requests, tuple(args.targets))
    print(f"direct p50 {summary['direct_ms']['p50']:.2f} ms; one embedding p50 " + ", ".join(
        f"{e} {f['p50']:.2f} ms" for e, f in summary["floor_ms"].items()))
    for name, row in summary["targets"].items():
        print(f"{name:>22}: added p50 {row['added_ms']['p50']:.2f} ms, p99 "
              f"{row['added_ms']['p99']:.2f} ms ({row['added_p50_over_onnx_embedding']:.2f}x one "
              "ONNX embedding)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = provenance(started, command=f"python -m benchmarks.proxy_overhead --requests "
                      f"{args.requests} --targets {' '.join(args.targets)}")
    out.write_text(json.dumps({"summary": summary, "provenance": meta}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
