"""Gateways side by side: the same stub upstream direct, through unlearn-proxy and through
LiteLLM's proxy, interleaved in one run.

    python -m benchmarks.gateways [--requests 300] [--concurrency 32] [--seconds 8]
                                  [--litellm PATH] [--out benchmarks/results/gateways.json]

One stub upstream (``benchmarks.stub_upstream``, 0 ms latency) stands behind every gateway:
unlearn-proxy with no policy, with the input policy (detector + classifier), with the input and
an output policy, and streamed (:mod:`benchmarks.targets`), and LiteLLM's proxy (one worker,
its defaults) when the ``litellm`` command is found (``pip install -e .[compare]``, or
``--litellm`` naming it; LiteLLM's dependencies may be installed in a virtual environment of
their own). Two measurements, each interleaved over the rows: one client sending rounds of one
request per row (added latency = the row's time minus the direct time of the same mode in the
same round, p50/p99), then timed drives of ``--concurrency`` clients per row, in rounds
(requests per second, closed loop) with the lean client of :mod:`benchmarks.load_client`. A
row whose rate is within 10 % of the direct path's, or whose drive kept this process's CPU
90 % busy, is marked as capped by the load client: the figure is the client's limit, not the
gateway's. Writes JSON, a Markdown table and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
import yaml

from benchmarks.load_client import LoadConnection, LoadRun, drive_load
from benchmarks.processes import command_server, free_port, proxy_server, python_server
from benchmarks.provenance import provenance, write_report
from benchmarks.proxy_overhead import percentile
from benchmarks.targets import proxy_config, request_text

WARMUP = 20
ROUNDS = 3  # timed drives per row at the concurrency level, interleaved over the rows
CAP_SHARE = 0.9  # a rate within 10 % of the direct path's, or a client this busy: capped


@dataclass(frozen=True)
class Row:
    """One line of the table: a gateway (``direct``, ``litellm`` or a proxy target) and a mode."""

    gateway: str
    stream: bool = False

    @property
    def name(self) -> str:
        return f"{self.gateway} (stream)" if self.stream else self.gateway


ROWS = (Row("direct"), Row("direct", True), Row("proxy"), Row("proxy+policy"),
        Row("proxy+policy+output"), Row("proxy", True), Row("proxy+policy+output", True))
LITELLM_ROWS = (Row("litellm"), Row("litellm", True))


def _body(text: str, stream: bool) -> bytes:
    return json.dumps({"model": "stub", "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


@contextmanager
def litellm_server(command: str, upstream: str, directory: Path) -> Iterator[str]:
    """LiteLLM's proxy (one worker, defaults, no database, no master key) in front of
    ``upstream``."""
    config = directory / "litellm.yaml"
    config.write_text(yaml.safe_dump({"model_list": [{"model_name": "stub", "litellm_params": {
        "model": "openai/stub", "api_base": f"{upstream}/v1", "api_key": "sk-stub"}}]}))
    port = free_port()
    # no client keys on either side (unlearn-proxy runs without api_keys here too): LiteLLM
    # refuses to start without a master key unless told this is intended
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "DISABLE_ADMIN_UI": "True", "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
    with command_server([command, "--config", str(config), "--port", str(port), "--num_workers",
                         "1"], port=port, env=env, timeout_s=300.0,
                        health_path="/health/liveliness") as (url, _):
        yield url


async def _sequential(urls: dict[str, str], rows: list[Row], requests: int) -> dict[str, list[float]]:
    """Rounds of one request per row, one client (a keep-alive connection per gateway)."""
    connections = {gateway: LoadConnection(url) for gateway, url in urls.items()}
    times: dict[str, list[float]] = {row.name: [] for row in rows}
    try:
        for i in range(requests + WARMUP):
            for number, row in enumerate(rows):
                # a text of its own per row (one gateway serves two rows: no embedding-cache
                # hits), of the same length for every row
                text = request_text(i, f"gateways-{number:02d}")
                started = time.perf_counter()
                answer = await connections[row.gateway].post_json(
                    "/v1/chat/completions", _body(text, row.stream), timeout_s=60)
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status != 200:
                    raise RuntimeError(f"{row.name} answered {answer.status}: {answer.body[:300]!r}")
                if i >= WARMUP:
                    times[row.name].append(elapsed)
    finally:
        for connection in connections.values():
            connection.close()
    return times


def _drive(url: str, row: Row, *, concurrency: int, seconds: float, tag: str) -> tuple[LoadRun, float]:
    """A timed drive and the share of one CPU this process spent on it."""
    cpu, wall = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        run = runner.run(drive_load(
            url, "/v1/chat/completions", lambda i: _body(request_text(i, tag), row.stream),
            concurrency=concurrency, duration_s=seconds, warmup_s=1.0))
    return run, (time.process_time() - cpu) / (time.perf_counter() - wall)


def _concurrent(urls: dict[str, str], rows: list[Row], *, concurrency: int,
                seconds: float) -> dict[str, dict[str, float]]:
    runs = {row.name: LoadRun([], 0, 0, 0.0) for row in rows}
    busy: dict[str, list[float]] = {row.name: [] for row in rows}
    for round_ in range(ROUNDS):
        for number, row in enumerate(rows):
            run, share = _drive(urls[row.gateway], row, concurrency=concurrency,
                                seconds=seconds / ROUNDS, tag=f"c{concurrency}-{round_}-{number:02d}")
            runs[row.name] += run
            busy[row.name].append(share)
    return {name: {"rps": run.rps, "p50_ms": percentile(run.latencies_ms, 50),
                   "p99_ms": percentile(run.latencies_ms, 99), "errors": run.errors,
                   "client_cpu_share": statistics.mean(busy[name])} for name, run in runs.items()}


def summarise(times: dict[str, list[float]], load: dict[str, dict[str, float]],
              rows: list[Row]) -> dict[str, Any]:
    """Per row: latency, added latency against the direct path of its mode (paired by round),
    rate at the concurrency level and whether the load client capped it."""
    out: dict[str, Any] = {}
    for row in rows:
        direct = Row("direct", row.stream).name
        added = [t - d for t, d in zip(times[row.name], times[direct], strict=True)]
        rate = load[row.name]
        capped = row.gateway != "direct" and rate["rps"] >= CAP_SHARE * load[direct]["rps"]
        out[row.name] = {
            "latency_ms": {"p50": percentile(times[row.name], 50), "p99": percentile(times[row.name], 99)},
            "added_ms": {"p50": statistics.median(added), "p99": percentile(added, 99)},
            **rate, "capped_by_client": bool(capped or rate["client_cpu_share"] >= CAP_SHARE),
        }
    return out


def run(requests: int, concurrency: int, seconds: float, litellm: str | None) -> dict[str, Any]:
    """The whole comparison; returns the summary keyed by row name."""
    rows = [*ROWS, *(LITELLM_ROWS if litellm else ())]
    port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(port), "--latency-ms", "0"]
    with tempfile.TemporaryDirectory() as tmp_dir, python_server(stub, port=port) as (up, _), \
            ExitStack() as stack:
        tmp = Path(tmp_dir)
        urls = {"direct": up}
        for gateway in dict.fromkeys(row.gateway for row in rows if row.gateway.startswith("proxy")):
            urls[gateway] = stack.enter_context(proxy_server(
                proxy_config(tmp, up, gateway), extra_args=["--no-watch"]))[0]
        if litellm:
            urls["litellm"] = stack.enter_context(litellm_server(litellm, up, tmp))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            times = runner.run(_sequential(urls, rows, requests))
        load = _concurrent(urls, rows, concurrency=concurrency, seconds=seconds)
    return summarise(times, load, rows)


def ratios(summary: dict[str, Any]) -> dict[str, float]:
    """unlearn-proxy (no policy) against LiteLLM: added p50 and rate, each mode (LiteLLM rows
    present only)."""
    out: dict[str, float] = {}
    for suffix in ("", " (stream)"):
        ours, theirs = summary.get(f"proxy{suffix}"), summary.get(f"litellm{suffix}")
        if ours is None or theirs is None:
            continue
        key = "stream" if suffix else "json"
        out[f"litellm_added_p50_over_proxy_{key}"] = (
            theirs["added_ms"]["p50"] / max(ours["added_ms"]["p50"], 1e-3))
        out[f"proxy_rps_over_litellm_{key}"] = ours["rps"] / theirs["rps"]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The summary as a Markdown table, one line per row."""
    results, meta = report["results"], report["provenance"]
    lines = [
        "# Gateways side by side", "", f"Command: `{meta['command']}`  ",
        f"Commit {meta['git_commit']}{' (dirty)' if meta['git_dirty'] else ''}, "
        f"{meta['started_utc']}, {meta['wall_time_s']:.0f} s on {meta['host']['cpus']} CPUs; "
        f"LiteLLM {meta.get('litellm_version') or 'not installed'}.", "",
        "One stub upstream (0 ms) behind every gateway. Added: the row's latency minus the "
        f"direct path's in the same round, one client, {meta['requests']} rounds. rps: "
        f"{meta['concurrency']} clients, closed loop, {meta['seconds']:g} s per row in "
        f"{ROUNDS} interleaved rounds. *capped*: within {100 - 100 * CAP_SHARE:.0f} % of the "
        f"direct path's rate or the load client {100 * CAP_SHARE:.0f} % busy — the client's "
        "limit, not the gateway's.", "",
        f"| row | p50 ms | added p50 ms | added p99 ms | rps at {meta['concurrency']} clients | "
        "p99 ms under load | errors | load client CPU |", "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["rows"].items():
        rps = f"{row['rps']:.0f}" + (" *capped*" if row["capped_by_client"] else "")
        lines.append(f"| {name} | {row['latency_ms']['p50']:.2f} | {row['added_ms']['p50']:.2f} | "
                     f"{row['added_ms']['p99']:.2f} | {rps} | {row['p99_ms']:.1f} | "
                     f"{row['errors']:.0f} | {row['client_cpu_share']:.0%} |")
    if results["ratios"]:
        lines += ["", "unlearn-proxy with no policy against LiteLLM: " + "; ".join(
            f"{key.replace('_', ' ')} {value:.1f}×" for key, value in results["ratios"].items()) + "."]
    return "\n".join([*lines, ""])


def plot(report: dict[str, Any], path: Path) -> None:
    """Added p50 and rate per row (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {n: r for n, r in report["results"]["rows"].items() if not n.startswith("direct")}
    colours = ["tab:orange" if n.startswith("litellm") else "tab:blue" for n in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].barh(list(rows), [r["added_ms"]["p50"] for r in rows.values()], color=colours)
    axes[0].set(xlabel="ms", title="Added p50 latency, one client (row − direct)")
    direct = report["results"]["rows"]["direct"]["rps"]
    axes[1].barh(list(rows), [r["rps"] for r in rows.values()], color=colours,
                 hatch=None, edgecolor=["black" if r["capped_by_client"] else "none" for r in rows.values()])
    axes[1].axvline(direct, color="grey", ls=":", label=f"direct {direct:.0f} rps (client limit)")
    axes[1].set(xlabel="requests/s", title=f"Throughput at {report['provenance']['concurrency']} clients")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _litellm_version(command: str) -> str | None:
    python = Path(command).with_name("python")
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description="gateways side by side on one stub upstream")
    parser.add_argument("--requests", type=int, default=300, help="one-client rounds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="drive time per row")
    parser.add_argument("--litellm", default=shutil.which("litellm"),
                        help="the litellm command (default: on PATH; omitted rows if none)")
    parser.add_argument("--out", default="benchmarks/results/gateways.json")
    args = parser.parse_args()
    started = time.time()
    rows = run(args.requests, args.concurrency, args.seconds, args.litellm)
    meta = provenance(
        started, requests=args.requests, concurrency=args.concurrency, seconds=args.seconds,
        litellm_version=_litellm_version(args.litellm) if args.litellm else None,
        command=f"python -m benchmarks.gateways --requests {args.requests} --concurrency "
                f"{args.concurrency} --seconds {args.seconds:g}"
                + (" --litellm PATH" if args.litellm else ""))
    report = {"results": {"rows": rows, "ratios": ratios(rows)}, "provenance": meta}
    write_report(args.out, report, render_markdown(report))
    plot(report, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
