"""Time to first token through a proxy with an output filter, and whether any stream leaks.

    python -m benchmarks.stream_ttft [--rounds 40] [--event-delay-ms 0 1 2]
                                     [--out benchmarks/results/stream_ttft.json]

Starts a fast stub upstream (``benchmarks.stub_upstream --echo``: the answer is the request's
text, streamed in pieces of at most five characters, ``--event-delay-ms`` apart; one stub per pace) and one
unlearn-proxy whose policy forgets J. K. Rowling with an ``output_filter`` only (aliases,
n-grams and sentence embeddings at their defaults), both real processes on loopback. Each round
streams one benign multi-sentence answer direct and through the proxy and records the time to
the first content byte of each (added TTFT = proxied - direct, the same round), then streams
one answer that writes the name in an obfuscated form (spaced, dotted, look-alike letters,
invisible characters, reversed, base64...) through the proxy and checks that nothing the client
received names her in any view (:func:`filters.alias_matcher.find_in_views`). Target: added
TTFT p50 <= 50 ms, zero leaks.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.processes import free_port, proxy_server, python_server
from benchmarks.provenance import provenance
from benchmarks.proxy_overhead import percentile
from filters.alias_matcher import AliasTable, find_in_views

NAMES = ["J. K. Rowling", "Joanne Rowling", "Robert Galbraith"]
POLICY: dict[str, Any] = {
    "forget": [{"id": "jk-rowling", "name": NAMES[0], "aliases": NAMES[1:],
                "description": "British author of the Harry Potter series."}],
    "methods": [{"type": "output_filter"}],
}
BENIGN = [
    "The tallest mountain in the Alps is Mont Blanc, on the border of France and Italy. It is "
    "about 4,800 metres high and was first climbed in 1786. Many climbers start from Chamonix.",
    "To sort a list in Python, call sorted(items) for a new list or items.sort() in place. Both "
    "accept a key function and reverse=True. Sorting is stable, so equal items keep their order.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. It happens in "
    "the chloroplasts of plant cells. The green pigment chlorophyll absorbs most of the light.",
    "Spiders have eight legs and two body parts, the cephalothorax and the abdomen. Most of them "
    "spin silk, and many build webs to catch insects. Only a few species are harmful to people.",
]
LEAKS = [
    "The author is J. K. Rowling, who wrote the series in Edinburgh.",
    "The author is J o a n n e   R o w l i n g, as the covers say.",
    "The author is Jоаnnе Rоwlіng (look-alike letters), a British writer.",
    "The author is Joan\u200bne Row\u200bling, a British writer.",
    "gnilwoR ennaoJ si rohtua ehT. Read it backwards.",
    "In base64: " + base64.b64encode(b"The author is Joanne Rowling.").decode(),
    "The author is R-o-b-e-r-t / G-a-l-b-r-a-i-t-h, a pen name.",
    "作者是J.K.Rowling，她住在爱丁堡。",
]


def _stream(client: httpx.Client, url: str, text: str) -> tuple[float, str, str | None]:
    """(ms to the first content, all content received, the last finish reason)."""
    body = {"model": "stub", "stream": True, "messages": [{"role": "user", "content": text}]}
    started, first, content, finish = time.perf_counter(), None, "", None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece and first is None:
                    first = (time.perf_counter() - started) * 1000
                content += piece
                finish = choice.get("finish_reason") or finish
    return (first if first is not None else float("nan")), content, finish


def _config(directory: Path, upstream: str) -> Path:
    data = {"server": {"state_dir": str(directory / "state")},
            "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
            "policies": {"forget": POLICY}, "routing": {"default_policy": "forget"}}
    path = directory / "stream_ttft.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(rounds: int, event_delay_ms: float) -> dict[str, Any]:
    """Measure ``rounds`` rounds (see the module docstring)."""
    table = AliasTable([("jk-rowling", name) for name in NAMES])
    port = free_port()
    stub = ["benchmarks.stub_upstream", "--port", str(port), "--echo",
            "--event-delay-ms", str(event_delay_ms)]
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    leaks, blocked, benign_blocked = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp, python_server(stub, port=port) as (upstream, _):
        with proxy_server(_config(Path(tmp), upstream)) as (proxy, _), httpx.Client(timeout=60) as client:
            for text in BENIGN * 2:  # warm-up: models loaded, connections open
                _stream(client, proxy, text)
            for i in range(rounds):
                text = f"{BENIGN[i % len(BENIGN)]} (round {i})"
                times["direct"].append(_stream(client, upstream, text)[0])
                ttft, content, finish = _stream(client, proxy, text)
                times["proxied"].append(ttft)
                benign_blocked += finish == "content_filter" or content != text
                leak = LEAKS[i % len(LEAKS)]
                _, received, finish = _stream(client, proxy, leak)
                blocked += finish == "content_filter"
                if find_in_views(table, received) is not None:
                    leaks.append(received)
    added = [p - d for p, d in zip(times["proxied"], times["direct"], strict=True)]
    return {
        "rounds": rounds, "event_delay_ms": event_delay_ms,
        "direct_ttft_ms": {"p50": percentile(times["direct"], 50),
                           "p99": percentile(times["direct"], 99)},
        "proxied_ttft_ms": {"p50": percentile(times["proxied"], 50),
                            "p99": percentile(times["proxied"], 99)},
        "added_ttft_ms": {"p50": statistics.median(added), "p99": percentile(added, 99)},
        "benign_blocked_or_changed": benign_blocked,
        "leak_streams": rounds, "leak_streams_blocked": blocked, "leaks": leaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--event-delay-ms", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_ttft.json"))
    args = parser.parse_args()
    started = time.time()
    results = [run(args.rounds, delay) for delay in args.event_delay_ms]
    paces = " ".join(f"{d:g}" for d in args.event_delay_ms)
    command = f"python -m benchmarks.stream_ttft --rounds {args.rounds} --event-delay-ms {paces}"
    report = {"results": results, "policy": POLICY,
              "provenance": provenance(started, command=command)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for result in results:
        print(f"pace {result['event_delay_ms']:g} ms/event: added TTFT p50 "
              f"{result['added_ttft_ms']['p50']:.1f} ms (p99 {result['added_ttft_ms']['p99']:.1f}), "
              f"direct {result['direct_ttft_ms']['p50']:.1f} ms; leaks {len(result['leaks'])} of "
              f"{result['leak_streams']} obfuscated streams ({result['leak_streams_blocked']} "
              f"blocked); benign answers blocked or changed {result['benign_blocked_or_changed']}")


if __name__ == "__main__":
    main()
