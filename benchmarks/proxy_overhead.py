"""Latency the proxy adds with no policy: the same requests direct and through it, one run.

    python -m benchmarks.proxy_overhead [--requests 400] [--out benchmarks/results/proxy_overhead.json]

Starts a stub upstream (``benchmarks.stub_upstream``) and an unlearn-proxy in front of it, both
as real processes on loopback, then alternates direct and proxied requests with one client and
reports p50/p99 of each and of the difference. Target: added p50 <= 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from benchmarks.processes import free_port, proxy_server, python_server
from benchmarks.provenance import provenance

BODY = {"model": "stub", "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 16}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _timed_post(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.post(url, json=BODY)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def measure(requests: int) -> dict[str, object]:
    """Run the comparison; returns the summary dict."""
    upstream_port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(upstream_port), "--latency-ms", "0"]
    with tempfile.TemporaryDirectory() as tmp, python_server(stub, port=upstream_port) as (up, _):
        config = Path(tmp) / "proxy.yaml"
        config.write_text(yaml.safe_dump({
            "server": {"state_dir": str(Path(tmp) / "state")},
            "models": {"stub": {"backend": "openai", "base_url": f"{up}/v1"}},
        }))
        with proxy_server(config, extra_args=["--no-watch"]) as (proxy, _), httpx.Client() as client:
            direct, proxied = [], []
            for i in range(requests + 20):
                d = _timed_post(client, f"{up}/v1/chat/completions")
                p = _timed_post(client, f"{proxy}/v1/chat/completions")
                if i >= 20:  # warm-up
                    direct.append(d)
                    proxied.append(p)
    added = [p - d for p, d in zip(proxied, direct)]
    summary = {
        "requests": requests,
        "direct_ms": {"p50": percentile(direct, 50), "p99": percentile(direct, 99)},
        "proxied_ms": {"p50": percentile(proxied, 50), "p99": percentile(proxied, 99)},
        "added_ms": {"p50": statistics.median(added), "p99": percentile(added, 99)},
        "ratio_p50": percentile(proxied, 50) / percentile(direct, 50),
        "target_added_p50_ms": 2.0,
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="proxy overhead with no policy")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--out", default="benchmarks/results/proxy_overhead.json")
    args = parser.parse_args()
    started = time.time()
    summary = measure(args.requests)
    print(f"direct   p50 {summary['direct_ms']['p50']:.2f} ms  p99 {summary['direct_ms']['p99']:.2f} ms")  # type: ignore[index]
    print(f"proxied  p50 {summary['proxied_ms']['p50']:.2f} ms  p99 {summary['proxied_ms']['p99']:.2f} ms")  # type: ignore[index]
    print(f"added    p50 {summary['added_ms']['p50']:.2f} ms  p99 {summary['added_ms']['p99']:.2f} ms  (target p50 <= 2 ms)")  # type: ignore[index]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "provenance": provenance(started)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
