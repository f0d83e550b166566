"""Proxy throughput and added latency under concurrency, against a real upstream process.

    python -m benchmarks.load [--concurrency 1 8 32 128] [--seconds-per-level 8]
                              [--upstream-latency-ms 50] [--out benchmarks/results/load.json]

Starts ``benchmarks.stub_upstream`` (an OpenAI-compatible server with a fixed latency) and four
unlearn-proxy processes in front of it — one without a policy, one with the full input-side
policy (alias + embedding detector + classifier) on the default embedding engine (ONNX
Runtime), the same policy set to ``speculate: true`` (the upstream call runs while the guards
decide), the same policy on the torch engine (``embedder.engine: torch``, the comparison of
issue 19), at int8 (``embedder.precision: int8``) and with the scope check in place of the
detector and classifier (``type: scope``, issue 17) — then drives each, and the upstream
directly,
at every concurrency level, streaming and not, with the lean keep-alive client of
:mod:`benchmarks.load_client` (so that the client costs little of the two cores). Added
latency = proxied minus direct percentile at the same level; throughput is what completes
inside each timed round (closed loop, like ``hey -z``). The embedding floor is measured in this
process after each round, so each level is compared with the machine's speed at that time, on
texts the policy proxy was sent in that round: one MiniLM embedding of a request, taken an
upstream latency apart as a one-client proxy takes them (a CPU that sat idle that long embeds
measurably slower than one embedding back to back, which is also recorded), and MiniLM's rate
in batches of 64 (the most the proxy's batcher takes), all with the proxy's default one thread,
on each engine. Also records the proxies' RSS, their embedding worker processes included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import uvloop

from benchmarks.load_client import LoadRun, drive_load
from benchmarks.processes import free_port, proxy_server, python_server
from benchmarks.provenance import provenance
from benchmarks.proxy_overhead import percentile
from benchmarks.targets import QUESTIONS, proxy_config, request_text
from filters.batching import DEFAULT_MAX_BATCH

ROUNDS = 4  # timed rounds per level, each followed by a floor measurement
WARMUP_S = 1.0  # untimed start of each round: clients that all start at once settle by then
BATCH = DEFAULT_MAX_BATCH  # the most texts the proxy's embedding batcher takes at once
TARGETS = ("direct", "proxy", "proxy+policy", "proxy+policy+speculate", "proxy+policy+torch",
           "proxy+policy+int8", "proxy+policy+scope")
ENGINES = ("onnx", "torch")  # the floor is measured on each; "embedding_floor" is the default's


def _body(i: int, stream: bool, tag: str) -> bytes:
    return json.dumps({"model": "stub", "max_tokens": 16, "stream": stream,
                       "messages": [{"role": "user", "content": request_text(i, tag)}]}).encode()


def sent_texts(tag: str, sent: int, n: int) -> list[str]:
    """``n`` of the ``sent`` request texts of a drive tagged ``tag``, evenly spaced (repeating
    when fewer were sent): the floor embeds what the proxy embedded, as a text's cost grows
    with its tokens (the tag and the request number are a fifth of them)."""
    return [request_text(k * max(sent, 1) // n, tag) for k in range(n)]


def drive(url: str, *, concurrency: int, seconds: float, stream: bool, tag: str,
          warmup_s: float = WARMUP_S) -> LoadRun:
    """``concurrency`` clients sending requests for ``warmup_s`` untimed, then ``seconds``
    timed (texts made unique by ``tag``)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(drive_load(
            url, "/v1/chat/completions", lambda i: _body(i, stream, tag),
            concurrency=concurrency, duration_s=seconds, warmup_s=warmup_s))


def _summary(run: LoadRun) -> dict[str, float]:
    latencies = run.latencies_ms
    return {"rps": run.rps, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99), "errors": run.errors}


class EmbeddingFloor:
    """MiniLM measured in this process, as the proxy runs it on ``engine`` (one thread; torch's
    pinned).

    The machine's speed drifts by tens of per cent within minutes, so each concurrency level
    interleaves floor measurements with its requests (:func:`measure_level`).
    """

    def __init__(self, engine: str = "onnx") -> None:
        from filters.embedder import LocalEmbedder, local_embedder

        self.embedder = local_embedder(engine=engine)  # type: ignore[arg-type]
        if isinstance(self.embedder, LocalEmbedder):
            self.embedder.pin_threads()
        self.embedder.embed(QUESTIONS)

    def singles_ms(self, texts: list[str], *, gap_s: float = 0.0) -> list[float]:
        """One embedding of each text, ``gap_s`` apart, in ms each."""
        times = []
        for text in texts:
            time.sleep(gap_s)
            started = time.perf_counter()
            self.embedder.embed([text])
            times.append((time.perf_counter() - started) * 1000)
        return times

    def batched_rate(self, texts: list[str], rounds: int = 2) -> float:
        """Texts per second embedding ``texts`` in one batch (best of ``rounds``)."""
        best = 0.0
        for _ in range(rounds):
            started = time.perf_counter()
            self.embedder.embed(texts)
            best = max(best, len(texts) / (time.perf_counter() - started))
        return best


_EMBEDDER_COUNTERS = {"unlearn_embedding_batches": "batches", "unlearn_embedding_texts": "texts",
                      "unlearn_embedding_busy_seconds": "busy_s"}


def embedder_counters(url: str) -> dict[str, float]:
    """The proxy's embedding counters (``/metrics``), summed over its embedders."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = dict.fromkeys(_EMBEDDER_COUNTERS.values(), 0.0)
    text = httpx.get(f"{url}/metrics", timeout=10).raise_for_status().text
    for family in text_string_to_metric_families(text):
        if family.name in _EMBEDDER_COUNTERS:
            totals[_EMBEDDER_COUNTERS[family.name]] += sum(s.value for s in family.samples)
    return totals


def _embedder_summary(counted: dict[str, float]) -> dict[str, float]:
    """The embedder while a target was driven: mean batch, share of the time it was busy, and
    its cost per text (compare with the floor's batched rate)."""
    return {"mean_batch": counted["texts"] / counted["batches"],
            "busy_share": counted["busy_s"] / counted["wall_s"],
            "ms_per_text": counted["busy_s"] / counted["texts"] * 1000}


def measure_level(floors: dict[str, EmbeddingFloor], urls: dict[str, str], *, level: int,
                  seconds: float, stream: bool, gap_s: float) -> dict[str, Any]:
    """One concurrency level: ROUNDS rounds of (``seconds / ROUNDS`` of every target, then a
    floor measurement per engine on texts the policy proxy was sent in that round), so targets
    and floors see the same drift of the machine's speed and embed the same texts. ``gap_s``
    spaces the floor's single embeddings. The proxies' embedding counters are read around each
    drive."""
    runs = {name: LoadRun([], 0, 0, 0.0) for name in urls}
    counted = {name: dict.fromkeys(("batches", "texts", "busy_s", "wall_s"), 0.0) for name in urls}
    measured: dict[str, dict[str, list[float]]] = {
        engine: {"singles": [], "hot": [], "rates": []} for engine in floors}
    for round_ in range(ROUNDS):
        tag = f"{stream}-{level}-{round_}"
        sent: dict[str, int] = {}
        for name, url in urls.items():
            before = embedder_counters(url) if name != "direct" else None
            started = time.perf_counter()
            run = drive(url, concurrency=level, seconds=seconds / ROUNDS, stream=stream, tag=tag)
            runs[name] += run
            counted[name]["wall_s"] += time.perf_counter() - started
            if before is not None:
                after = embedder_counters(url)
                for key, value in before.items():
                    counted[name][key] += after[key] - value
            sent[name] = run.sent
        texts = sent_texts(tag, sent["proxy+policy"], 20)
        for engine, floor in floors.items():
            measured[engine]["singles"] += floor.singles_ms(texts, gap_s=gap_s)
            measured[engine]["hot"] += floor.singles_ms(texts)
            measured[engine]["rates"].append(
                floor.batched_rate(sent_texts(tag, sent["proxy+policy"], BATCH)))
    row: dict[str, Any] = {name: _summary(run) for name, run in runs.items()}
    for name, figures in counted.items():
        if figures["texts"]:  # batches that all failed embed no texts
            row[name]["embedder"] = _embedder_summary(figures)
    for engine, figures in measured.items():
        key = "embedding_floor" if engine == ENGINES[0] else f"embedding_floor_{engine}"
        row[key] = {"single_ms_p50": percentile(figures["singles"], 50),
                    "single_ms_back_to_back_p50": percentile(figures["hot"], 50),
                    "batched_texts_per_s": sum(figures["rates"]) / len(figures["rates"])}
    return row


def _rss_mb(pid: int) -> float:
    """RSS of the process and its children (the embedding worker) together."""
    import psutil

    process = psutil.Process(pid)
    tree = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree) / 2**20


def embedded_rss_mb() -> float:
    """RSS of ``unlearn-proxy serve`` with the built-in config (embedded model + demo policy)."""
    with proxy_server(None, extra_args=["--no-watch"]) as (url, process), httpx.Client(timeout=120) as client:
        for question in QUESTIONS[:4]:
            body = {"model": "gemma-3-270m", "max_tokens": 16,
                    "messages": [{"role": "user", "content": question}]}
            client.post(f"{url}/v1/chat/completions", json=body).raise_for_status()
        return _rss_mb(process.pid)


def run(levels: list[int], seconds: float, latency_ms: float) -> dict[str, Any]:
    """The whole measurement; returns results keyed by target, stream mode and level."""
    floors = {engine: EmbeddingFloor(engine) for engine in ENGINES}
    port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(port), "--latency-ms", str(latency_ms)]
    results: dict[str, Any] = {"floor_batch": BATCH, "levels": {}}
    with tempfile.TemporaryDirectory() as tmp_dir, python_server(stub, port=port) as (up, _), \
         ExitStack() as proxies:
        tmp = Path(tmp_dir)
        servers = {name: proxies.enter_context(proxy_server(proxy_config(tmp, up, name), extra_args=["--no-watch"]))
                   for name in TARGETS[1:]}
        urls = {"direct": up, **{name: url for name, (url, _) in servers.items()}}
        for stream in (False, True):
            for level in levels:
                key = f"{'stream' if stream else 'json'}@{level}"
                row = measure_level(floors, urls, level=level, seconds=seconds, stream=stream,
                                    gap_s=latency_ms / 1000)
                results["levels"][key] = row
                print(_line(key, row))
        results["rss_mb"] = {name: _rss_mb(process.pid) for name, (_, process) in servers.items()}
    results["rss_mb"]["embedded_model+demo_policy"] = embedded_rss_mb()
    return results


def _line(key: str, row: dict[str, Any]) -> str:
    floor = row["embedding_floor"]
    added = row["proxy+policy"]["p50"] - row["direct"]["p50"]
    speculating = row["proxy+policy+speculate"]["p50"] - row["direct"]["p50"]
    share = row["proxy+policy"]["rps"] / floor["batched_texts_per_s"]
    single, hot = floor["single_ms_p50"], floor["single_ms_back_to_back_p50"]
    embedder = row["proxy+policy"]["embedder"]
    torch_added = row["proxy+policy+torch"]["p50"] - row["direct"]["p50"]
    return (f"{key:>10}  direct {row['direct']['rps']:7.1f} rps  proxy {row['proxy']['rps']:7.1f} rps  "
            f"policy {row['proxy+policy']['rps']:7.1f} rps = {share:4.0%} of batched, "
            f"{row['proxy+policy']['rps'] / row['proxy+policy+torch']['rps']:.2f}x torch's "
            f"({row['proxy+policy+torch']['rps']:.1f} rps, added p50 {torch_added:.2f} ms), int8 "
            f"{row['proxy+policy+int8']['rps']:.1f} rps = "
            f"{row['proxy+policy+int8']['rps'] / row['proxy+policy+torch']['rps']:.2f}x torch's "
            f"(added p50 {row['proxy+policy+int8']['p50'] - row['direct']['p50']:.2f} ms)  "
            f"added p50 (policy) {added:6.2f} ms = {added / single:.2f}x floor ({single:.1f} ms; "
            f"{added / hot:.2f}x back to back, {hot:.1f} ms), speculating {speculating:6.2f} ms  "
            f"scope {row['proxy+policy+scope']['rps']:.1f} rps = "
            f"{row['proxy+policy+scope']['rps'] / floor['batched_texts_per_s']:.0%} of batched  "
            f"errors {sum(int(row[t]['errors']) for t in TARGETS)}  embedder busy "
            f"{embedder['busy_share']:.0%}, batch {embedder['mean_batch']:.1f}, "
            f"{embedder['ms_per_text']:.1f} ms/text (floor {1000 / floor['batched_texts_per_s']:.1f})")


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and added p50 per concurrency level (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = dict(zip(TARGETS, ("tab:grey", "tab:blue", "tab:red", "tab:green", "tab:orange",
                                 "tab:purple", "tab:brown"), strict=True))
    for mode, style in (("json", "-"), ("stream", "--")):
        keys = [k for k in results["levels"] if k.startswith(mode)]
        levels = [int(k.split("@")[1]) for k in keys]
        for name in TARGETS:
            rows = [results["levels"][k] for k in keys]
            axes[0].plot(levels, [r[name]["rps"] for r in rows], style, marker="o",
                         color=colours[name], label=f"{name} ({mode})")
            if name != "direct":
                added = [r[name]["p50"] - r["direct"]["p50"] for r in rows]
                axes[1].plot(levels, added, style, marker="o", color=colours[name],
                             label=f"{name} ({mode})")
    axes[0].set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="requests/s",
                title="Throughput")
    axes[1].set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms",
                title="Added p50 latency (proxied − direct)")
    floors = [row["embedding_floor"] for row in results["levels"].values()]
    axes[0].axhline(percentile([f["batched_texts_per_s"] for f in floors], 50), color="black",
                    ls=":", label=f"MiniLM (ONNX) alone, batches of {BATCH} (median floor)")
    singles = [f["single_ms_p50"] for f in floors]
    axes[1].axhline(percentile(singles, 50), color="black", ls=":",
                    label="1 ONNX embedding at request cadence (median floor)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _table_row(key: str, row: dict[str, Any]) -> str:
    mode, level = key.split("@")
    floor, direct, policy = row["embedding_floor"], row["direct"]["p50"], row["proxy+policy"]
    added, embedder = policy["p50"] - direct, policy["embedder"]
    share = f"{policy['rps'] / floor['batched_texts_per_s']:.0%}"
    times = (f"**{added / floor['single_ms_p50']:.2f}×** "
             f"({added / floor['single_ms_back_to_back_p50']:.2f}×)" if level == "1" else "–")
    torch, int8 = row["proxy+policy+torch"], row["proxy+policy+int8"]
    scope = row["proxy+policy+scope"]
    scope_share = f"{scope['rps'] / floor['batched_texts_per_s']:.0%}"
    cells = [
        level, mode, *(f"{row[name]['rps']:.0f}" for name in TARGETS[:3]),
        f"{torch['rps']:.0f}", f"**{policy['rps'] / torch['rps']:.2f}×**",
        f"{int8['rps']:.0f}", f"**{int8['rps'] / torch['rps']:.2f}×**",
        f"**{share}**" if level == "32" else share,
        f"{scope['rps']:.0f}", f"**{scope_share}**" if level == "32" else scope_share,
        f"{embedder['busy_share']:.0%} / {embedder['mean_batch']:.1f} / "
        f"{embedder['ms_per_text']:.1f} ({1000 / floor['batched_texts_per_s']:.1f})",
        f"{floor['single_ms_p50']:.1f} ({floor['single_ms_back_to_back_p50']:.1f})",
        f"{row['proxy']['p50'] - direct:.1f}", f"{added:.1f}", f"{torch['p50'] - direct:.1f}",
        f"{int8['p50'] - direct:.1f}",
        times,
        f"{row['proxy+policy+speculate']['p50'] - direct:.1f}",
        str(sum(int(row[name]["errors"]) for name in TARGETS)),
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per mode and level."""
    results, meta = report["results"], report["provenance"]
    levels = sorted({int(key.split("@")[1]) for key in results["levels"]})
    command = (f"python -m benchmarks.load --concurrency {' '.join(map(str, levels))} "
               f"--seconds-per-level {meta['seconds_per_level']:g} "
               f"--upstream-latency-ms {meta['upstream_latency_ms']:g}")
    rss = ", ".join(f"{name} {mb:,.0f} MB" for name, mb in results["rss_mb"].items())
    return "\n".join([
        "# Proxy load", "", f"Command: `{command}`  ",
        f"Commit {meta['git_commit']}{' (dirty)' if meta['git_dirty'] else ''}, "
        f"{meta['started_utc']}, {meta['wall_time_s']:.0f} s on {meta['host']['cpus']} CPUs.", "",
        "rps: requests completed per second inside the timed rounds. policy: the input policy "
        "(detector + classifier) on the default embedding engine (ONNX Runtime); torch: the "
        "same policy with `embedder.engine: torch`; int8: with `embedder.precision: int8`; × "
        "torch: a rate over torch's; scope: the scope check in place of detector + classifier. "
        "% batched: the policy proxy's rate over MiniLM's rate alone (ONNX Runtime) in batches of "
        f"{results['floor_batch']} (one thread) of texts the policy proxy was sent. "
        "Embedder: the policy proxy's embedding worker while driven — busy share / mean batch "
        "/ ms per text (ms per text alone in batches). Floor: one embedding of a request an "
        "upstream latency apart (back to back). Added: p50 "
        "above the direct p50 at the same level; × floor: the policy's added p50 over the "
        "floor (over the back-to-back floor).", "",
        "| clients | mode | direct rps | proxy rps | policy rps | torch rps | × torch | int8 rps "
        "| int8 × torch | % batched | scope rps | scope % batched | embedder | floor ms "
        "| proxy added p50 ms | policy added p50 ms | torch added p50 ms | int8 added p50 ms "
        "| × floor | speculating added p50 ms | errors |",
        "|" + "---|" * 21,
        *(_table_row(key, row) for key, row in results["levels"].items()),
        "", f"RSS (embedding worker included): {rss}.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description="proxy load benchmark")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds-per-level", type=float, default=8.0,
                        help="time each target is driven at each level, over all rounds")
    parser.add_argument("--upstream-latency-ms", type=float, default=50.0)
    parser.add_argument("--out", default="benchmarks/results/load.json")
    args = parser.parse_args()
    started = time.time()
    results = run(args.concurrency, args.seconds_per_level, args.upstream_latency_ms)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = provenance(started, upstream_latency_ms=args.upstream_latency_ms,
                      seconds_per_level=args.seconds_per_level)  # before any output is written
    plot(results, out.with_suffix(".png"))
    report = {"results": results, "provenance": meta}
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(render_markdown(report), encoding="utf-8")
    print(f"RSS: {results['rss_mb']}")
    print(f"wrote {out} and its .png and .md")


if __name__ == "__main__":
    main()
