"""One replica against two sharing one PostgreSQL store, under the same load, in one run.

    python -m benchmarks.replicas [--concurrency 32] [--seconds 6] [--rounds 2]
        [--latency-ms 50] [--out benchmarks/results/replicas.json]

Starts PostgreSQL (``benchmarks.postgres_server``), a stub upstream with ``latency-ms`` and two
unlearn-proxy replicas with ``server.store.backend: postgres`` and the input policy (alias +
embedding detector), then alternates rounds: all ``concurrency`` clients on replica 1, and the
same clients split evenly over replicas 1 and 2 (what a round-robin load balancer does). Each
round reports requests per second and latency percentiles. On a machine with fewer cores than
processes the replicas share the same CPUs: the figure says what a second replica buys *here*,
not what it buys on a second machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from benchmarks.load_client import LoadRun, drive_load
from benchmarks.postgres_server import postgres_server
from benchmarks.processes import REPO, free_port, proxy_server, python_server
from benchmarks.provenance import provenance
from benchmarks.proxy_overhead import percentile

POLICY = {"forget": [{"id": "jk-rowling", "name": "J. K. Rowling",
                      "aliases": ["Joanne Rowling", "Robert Galbraith"],
                      "questions": ["Who wrote the Harry Potter books?"]}],
          "methods": [{"type": "input_detector"}]}


def _body(i: int) -> bytes:
    return json.dumps({"model": "stub", "max_tokens": 16, "messages": [
        {"role": "user", "content": f"Request {i}: what is the capital of country {i % 97}?"}]}
    ).encode()


async def _drive(urls: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    """``concurrency`` clients split evenly over ``urls``, for ``seconds`` after 1 s untimed."""
    shares = [concurrency // len(urls) + (k < concurrency % len(urls)) for k in range(len(urls))]
    runs: list[LoadRun] = await asyncio.gather(*(
        drive_load(url, "/v1/chat/completions", _body, concurrency=share, duration_s=seconds,
                   warmup_s=1.0) for url, share in zip(urls, shares, strict=True)))
    latencies = [ms for run in runs for ms in run.latencies_ms]
    return {"rps": sum(run.rps for run in runs), "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "errors": sum(run.errors for run in runs)}


def measure(concurrency: int, seconds: float, rounds: int, latency_ms: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        port = free_port()
        upstream, _ = stack.enter_context(python_server(
            ["benchmarks.stub_upstream", "--port", str(port), "--latency-ms", str(latency_ms)],
            port=port))
        urls = []
        for name in ("r1", "r2"):
            config = Path(tmp) / f"{name}.yaml"
            config.write_text(yaml.safe_dump({
                "server": {"state_dir": str(Path(tmp) / name),
                           "store": {"backend": "postgres", "dsn": pg.dsn}},
                "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
                "policies": {"p": POLICY}, "routing": {"default_policy": "p"}}))
            url, _ = stack.enter_context(proxy_server(config, extra_args=["--no-watch"]))
            urls.append(url)
        results: dict[str, list[dict[str, float]]] = {"one replica": [], "two replicas": []}
        for _ in range(rounds):
            results["one replica"].append(asyncio.run(_drive(urls[:1], concurrency, seconds)))
            results["two replicas"].append(asyncio.run(_drive(urls, concurrency, seconds)))
    summary = {name: {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
               for name, runs in results.items()}
    summary["two_over_one_rps"] = summary["two replicas"]["rps"] / summary["one replica"]["rps"]
    return {"rounds": results, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/replicas.json")
    args = parser.parse_args()
    started = time.time()
    result = measure(args.concurrency, args.seconds, args.rounds, args.latency_ms)
    record = {**result, "provenance": provenance(
        started, concurrency=args.concurrency, seconds=args.seconds, rounds=args.rounds,
        latency_ms=args.latency_ms, cpus=os.cpu_count())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
