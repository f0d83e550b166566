"""The no-policy latency of two versions of the proxy, interleaved in one run (a regression check).

    python -m benchmarks.overhead_ab --base <git ref> [--head <git ref>] [--requests 400]
        [--policy] [--concurrency 32 --seconds 4] [--out benchmarks/results/overhead_ab.json]

Each ref is checked out with ``git archive`` into a temporary tree and served as a real
process in front of one stub upstream (``benchmarks.stub_upstream``, 0 ms); one client sends
the same chat request direct, to ``base`` and to ``head`` in turn (the order alternating),
plain and streamed, and reports each proxy's added latency (its time less the direct request's
of the same round) at p50 and p99. ``--policy`` puts the speed benchmarks' input policy
(``benchmarks.targets.POLICY``) on every request, each text unique (no embedding-cache hits);
``--concurrency`` adds a closed-loop rate at that many clients, base and head in alternating
rounds. The machine's drift hits both proxies alike, so the ratio ``head / base`` is the
figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.load_client import drive_load
from benchmarks.processes import REPO, free_port, python_server, wait_healthy
from benchmarks.provenance import provenance
from benchmarks.proxy_overhead import percentile
from benchmarks.targets import POLICY, request_text

WARM_UP = 30


def _body(i: int, tag: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "stub", "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": request_text(i, tag)}]}


@contextmanager
def served_tree(ref: str, config: Path) -> Iterator[str]:
    """The proxy as committed at ``ref``, served from a temporary tree; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="unlearn-ab-") as tmp:
        archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True,
                                 check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": tmp, "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port), "--log-level",
             "warning", "--config", str(config), "--no-watch"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process=process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


def _timed(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    if body["stream"]:
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for _ in response.iter_bytes():
                pass
    else:
        client.post(url, json=body).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _rates(urls: dict[str, str], concurrency: int, seconds: float) -> dict[str, float]:
    """Requests per second of base and head at ``concurrency`` clients, two rounds each."""
    rates: dict[str, list[float]] = {"base": [], "head": []}
    for round_ in range(2):
        for name in ("base", "head") if round_ == 0 else ("head", "base"):
            tag = f"rate-{name}-{round_}"
            run = asyncio.run(drive_load(
                urls[name], "/v1/chat/completions",
                lambda i, tag=tag: json.dumps(_body(i, tag)).encode(),
                concurrency=concurrency, duration_s=seconds, warmup_s=1.0))
            rates[name].append(run.rps)
    summary = {f"{name}_rps": round(sum(v) / len(v), 1) for name, v in rates.items()}
    summary["head_over_base_rps"] = round(summary["head_rps"] / summary["base_rps"], 3)
    return summary


def measure(base: str, head: str, requests: int, *, policy: bool = False,
            concurrency: int | None = None, seconds: float = 4.0) -> dict[str, object]:
    """The interleaved comparison; returns the summary dict."""
    upstream_port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(upstream_port), "--latency-ms", "0"]
    with tempfile.TemporaryDirectory() as tmp, python_server(stub, port=upstream_port) as (up, _):
        config = Path(tmp) / "proxy.yaml"
        policies = {"policies": {"p": POLICY}, "routing": {"default_policy": "p"}} if policy else {}
        config.write_text(yaml.safe_dump({
            "server": {"state_dir": str(Path(tmp) / "state")},
            "models": {"stub": {"backend": "openai", "base_url": f"{up}/v1"}}, **policies,
        }))
        with ExitStack() as stack:
            urls = {"direct": up, "base": stack.enter_context(served_tree(base, config)),
                    "head": stack.enter_context(served_tree(head, config))}
            client = stack.enter_context(httpx.Client(timeout=30))
            result: dict[str, object] = {}
            for stream in (False, True):
                times: dict[str, list[float]] = {name: [] for name in urls}
                for i in range(requests + WARM_UP):
                    order = ("direct", "base", "head") if i % 2 else ("direct", "head", "base")
                    for name in order:
                        body = _body(i, f"{'s' if stream else 'p'}-{name}", stream)
                        took = _timed(client, f"{urls[name]}/v1/chat/completions", body)
                        if i >= WARM_UP:
                            times[name].append(took)
                result["stream" if stream else "plain"] = _summary(times)
            if concurrency:
                result[f"rate_{concurrency}_clients"] = _rates(urls, concurrency, seconds)
    return result


def _summary(times: dict[str, list[float]]) -> dict[str, object]:
    added = {name: [t - d for t, d in zip(times[name], times["direct"], strict=True)]
             for name in ("base", "head")}
    summary: dict[str, object] = {
        "direct_p50_ms": round(percentile(times["direct"], 50), 3),
        **{f"{name}_added_{q}_ms": round(percentile(values, q), 3)
           for name, values in added.items() for q in (50, 99)},
    }
    base_p50 = percentile(added["base"], 50)
    summary["head_over_base_p50"] = round(percentile(added["head"], 50) / base_p50, 3) \
        if base_p50 > 0 else None
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git ref to compare against")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--policy", action="store_true", help="the input policy on every request")
    parser.add_argument("--concurrency", type=int, help="also a rate at this many clients")
    parser.add_argument("--seconds", type=float, default=4.0, help="per rate round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/overhead_ab.json")
    args = parser.parse_args()
    started = time.time()
    result = measure(args.base, args.head, args.requests, policy=args.policy,
                     concurrency=args.concurrency, seconds=args.seconds)
    commits = {ref: subprocess.run(["git", "rev-parse", ref], cwd=REPO, capture_output=True,
                                   text=True, check=True).stdout.strip()
               for ref in (args.base, args.head)}
    record = {"result": result, "provenance": provenance(
        started, base=commits[args.base], head=commits[args.head], requests=args.requests,
        policy=args.policy, concurrency=args.concurrency)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
