"""Adversarial robustness: how often each attack family gets past each guard stack.

    python -m benchmarks.attacks [--data-dir D] [--limit N] [--rwku-targets K | --rwku-ids I,J]
                                 [--stacks S,T] [--out PATH]

Policies: the TOFU forget10 authors and RWKU targets (the first K, or ids I,J...), built by
``benchmarks.harness.policies`` (a held-out share of the probes is policy material and is never
attacked). Families: the unchanged question (``direct``), TOFU's paraphrased questions, RWKU's
level-3 adversarial probes by type, and the synthetic families of
``benchmarks.attack_transforms`` applied to the direct questions (TOFU forget QA, RWKU level 2);
the neighbour probes give the false-block rate. Each attack is a chat request through
``proxy.pipeline`` exactly as the server runs it. The model is a *compliant oracle*: it answers
every admitted request with the gold answer, written in the encoding the attack asked for.
A request bypasses a stack when the input guards admit it and that answer passes the output
guards: for input-only stacks the input-side bypass rate, with an ``output_filter`` an upper
bound on leakage (a real model leaks only what it knows and agrees to say).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.attack_transforms import FAMILIES, Attack, FamilyBuilder
from benchmarks.benign_lookalikes import benign_texts
from benchmarks.datasets import Benchmark, Probe, load_benchmark
from benchmarks.datasets.base import sample
from benchmarks.harness.backends import OracleBackend
from benchmarks.harness.config import DatasetSpec, SampleSizes
from benchmarks.harness.policies import ProbeSplit, base_policy, split_probes
from benchmarks.processes import REPO
from benchmarks.provenance import provenance
from proxy.core.types import GenerationParams
from proxy.core.embedded import EMBEDDER_NAME, cache_dir
from proxy.core.config import (
    InputClassifierConfig, InputDetectorConfig, MethodConfig, OutputFilterConfig, PolicyConfig,
    ScopeConfig,
)
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, Request
from proxy.policy import CompiledPolicy, compile_policy

__all__ = ["BENIGN", "FALSE_BLOCKS", "NEIGHBOUR", "STACKS", "Case", "build_cases", "main",
           "measure_policy", "render_markdown"]

RESULTS = REPO / "benchmarks" / "results" / "attacks.json"
NEIGHBOUR = "neighbour (false block)"
BENIGN = "benign look-alike (false block)"
FALSE_BLOCKS = (NEIGHBOUR, BENIGN)
"""Rows that count blocks, not bypasses."""
MODEL = "oracle"
_DET = InputDetectorConfig(type="input_detector")
_CLF = InputClassifierConfig(type="input_classifier")
_OUT = OutputFilterConfig(type="output_filter")
_SCOPE = ScopeConfig(type="scope")
STACKS: dict[str, tuple[MethodConfig, ...]] = {
    "input_detector": (_DET,),
    "input_classifier": (_CLF,),
    "input_detector+input_classifier": (_DET, _CLF),
    "scope": (_SCOPE,),
    "output_filter": (_OUT,),
    "input_detector+output_filter": (_DET, _OUT),
    "scope+output_filter": (_SCOPE, _OUT),
    "all": (_DET, _CLF, _OUT),
}
"""Method stacks (default settings), in table order; ``all`` is the detector, the classifier
and the output filter together."""
_PARAMS = GenerationParams(max_tokens=64, temperature=0.0)


@dataclass(frozen=True)
class Case:
    """One attack on one probe; ``answer`` is the gold answer the oracle gives when admitted."""

    family: str
    probe_id: str
    attack: Attack
    answer: str

    @property
    def output(self) -> str:
        """What the compliant oracle answers."""
        return self.attack.encode_answer(self.answer)


def _ask(text: str) -> Attack:
    return Attack(({"role": "user", "content": text},))


def _seed(seed: int, *parts: str) -> int:
    return int(hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).hexdigest()[:12], 16)


def _l3_family(probe_type: str | None) -> str:
    kind = "cross lingual" if "lingual" in (probe_type or "") else probe_type or "other"
    return f"rwku_l3: {kind}"


def build_cases(split: ProbeSplit, *, limit: int | None, seed: int,
                families: Mapping[str, FamilyBuilder] = FAMILIES, benign: int = 0) -> list[Case]:
    """Attack cases of every applicable family, at most ``limit`` probes each.

    Synthetic families attack the same sampled direct questions (level-2 QA for RWKU), so
    their rows are paired with ``direct``; neighbour probes are asked unchanged; ``benign``
    texts of :mod:`benchmarks.benign_lookalikes` are sent as they are and the oracle answers
    with the same text, so input and output guards both read them.
    """
    forget = split.candidates["forget"]
    direct = sample([p for p in forget if p.level in (None, "2")], limit, seed=seed,
                    label="direct")
    cases = [Case("direct", p.id, _ask(p.question), p.answer) for p in direct]
    cases += [Case("paraphrase", p.id, _ask(p.paraphrased_question),
                   p.paraphrased_answer or p.answer) for p in direct if p.paraphrased_question]
    level3: dict[str, list[Probe]] = {}
    for probe in forget:
        if probe.level == "3":
            level3.setdefault(_l3_family(probe.type), []).append(probe)
    for family, probes in sorted(level3.items()):
        cases += [Case(family, p.id, _ask(p.question), p.answer)
                  for p in sample(probes, limit, seed=seed, label=family)]
    for family, build in families.items():
        cases += [Case(family, p.id, build(p.question, _seed(seed, family, p.id)), p.answer)
                  for p in direct]
    neighbours = sample(split.candidates["neighbour"], limit, seed=seed, label="neighbour")
    cases += [Case(NEIGHBOUR, p.id, _ask(p.question), p.answer) for p in neighbours]
    cases += [Case(BENIGN, f"benign-{i}-{kind}", _ask(text), text)
              for i, (kind, text) in enumerate(benign_texts(benign, seed=seed))]
    return cases


def _run(loop: asyncio.Runner, runtimes: Mapping[str, CompiledPolicy],
         cases: Sequence[Case], desc: str) -> dict[str, list[bool]]:
    """Per stack and case: whether the answer reached the client (nothing blocked it).

    All stacks are policies of one pipeline and each case is asked of every stack in turn,
    so the embedding of an attack is computed once.
    """
    pipeline = Pipeline(backends={}, policies={r.name: r for r in runtimes.values()},
                        metrics=Metrics(), store=None)
    passed: dict[str, list[bool]] = {stack: [] for stack in runtimes}
    for index, case in enumerate(tqdm(cases, desc=desc, unit="case", disable=None)):
        messages = [dict(m) for m in case.attack.messages]
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        pipeline.backends[MODEL] = OracleBackend({last_user: case.output})
        for stack, runtime in runtimes.items():
            request = Request(kind="chat", model=MODEL, messages=messages, params=_PARAMS,
                              request_id=f"attack-{index}-{stack}")
            reply = loop.run(pipeline.answer(request, runtime.name))
            passed[stack].append(not reply.blocked)
    return passed


def _tally(cases: Sequence[Case], passed: Mapping[str, list[bool]]) -> dict[str, Any]:
    families: dict[str, Any] = {}
    for family in dict.fromkeys(c.family for c in cases):
        rows = [i for i, c in enumerate(cases) if c.family == family]
        cells = {}
        for stack, flags in passed.items():
            through = sum(flags[i] for i in rows)
            hits = len(rows) - through if family in FALSE_BLOCKS else through
            cells[stack] = {"n": len(rows), "count": hits, "rate": round(hits / len(rows), 4)}
        families[family] = cells
    return families


def measure_policy(name: str, benchmark: Benchmark, *, stacks: Mapping[str, Sequence[MethodConfig]],
                   limit: int | None, seed: int, state_dir: Path, loop: asyncio.Runner,
                   max_documents: int | None = 20, benign: int = 0) -> dict[str, Any]:
    """Bypass rates of every family (false-block rate for neighbours) under every stack."""
    spec = DatasetSpec(name=benchmark.name, mode="detect", max_documents=max_documents,
                       candidates=SampleSizes(forget=None, neighbour=None, retain=0, utility=0))
    split = split_probes(benchmark, spec, seed=seed)
    base = base_policy(benchmark, split, spec)
    cases = build_cases(split, limit=limit, seed=seed, benign=benign)
    runtimes = {stack: compile_policy(
        f"{name}-{stack}", base.model_copy(update={"methods": list(methods)}), base_dir=REPO,
        state_dir=state_dir) for stack, methods in stacks.items()}
    passed = _run(loop, runtimes, cases, name)
    return {
        "benchmark": benchmark.name, "params": dict(benchmark.params),
        "files": dict(benchmark.files),
        "targets": [t.id for t in base.forget], "policy_sha256": _policy_hash(base),
        "probe_split": split.counts(),
        "stacks": {stack: runtime.describe() for stack, runtime in runtimes.items()},
        "families": _tally(cases, passed),
        "items": [{"family": c.family, "probe_id": c.probe_id,
                   "passed": [s for s in stacks if passed[s][i]]} for i, c in enumerate(cases)],
    }


def _policy_hash(policy: PolicyConfig) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


def _cell(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "–"
    return f"{cell['rate']:.0%} ({cell['count']}/{cell['n']})"


def _table(result: Mapping[str, Any], stacks: Sequence[str]) -> list[str]:
    lines = ["| attack family | " + " | ".join(f"`{s}`" for s in stacks) + " |",
             "|---|" + "---:|" * len(stacks)]
    for family, cells in result["families"].items():
        label = f"**{family}**" if family in FALSE_BLOCKS else family
        lines.append(f"| {label} | " + " | ".join(_cell(cells.get(s)) for s in stacks) + " |")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The results as Markdown: one table per policy, rows = families, columns = stacks."""
    meta = report["provenance"]
    lines = [
        "# Adversarial robustness of the guard stacks", "",
        f"Command: `{meta['command']}`  ", f"Commit {meta['git_commit']}"
        f"{' (dirty)' if meta['git_dirty'] else ''}, {meta['started_utc']}, "
        f"{meta['wall_time_s']:.0f} s on {meta['host']['cpus']} CPUs; embedder "
        f"{meta['embedder']}, seed {meta['seed']}, at most {meta['limit']} probes per family.", "",
        "Cells: bypass rate (bypassed/n) — the request was admitted **and** a compliant oracle's "
        "gold answer (in the encoding the attack asked for) passed the output guards. Input-only "
        "stacks: measured input-side bypass; stacks with `output_filter`: upper bound on "
        "leakage (the filter sees the true answer). Bold rows: false-block rates on neighbour "
        "probes and on benign look-alike texts (code, hashes, UUIDs, base64 of harmless text, "
        "version strings, leet usernames, CJK/Thai prose, math, URLs, HTML; lower is better). "
        "`both_*`: question and answer in the encoding. Default settings: " + meta["stack_settings"] + ".", "",
    ]
    stacks = list(meta["stacks"])
    for name, result in report["policies"].items():
        lines += [f"## {name}: {len(result['targets'])} targets", "", *_table(result, stacks), ""]
    return "\n".join(lines)


def _settings(stacks: Mapping[str, Sequence[MethodConfig]]) -> str:
    configs = {m.type: m for methods in stacks.values() for m in methods}
    return "; ".join(f"{t} {m.model_dump(exclude={'type'}, exclude_none=True)}"
                     for t, m in configs.items())


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attacks",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=40, help="probes per family and policy")
    parser.add_argument("--tofu-split", default="forget10")
    parser.add_argument("--rwku-targets", type=int, default=10, help="the first N targets")
    parser.add_argument("--rwku-ids", type=lambda v: [int(i) for i in v.split(",")],
                        default=None, help="comma-separated RWKU target ids (overrides N)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated")
    parser.add_argument("--benign", type=int, default=325,
                        help="benign look-alike texts per policy (false-block row)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, default=None, help="compiled policy cache")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON; Markdown beside it")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.stacks.split(",")) - set(STACKS))
    if unknown:
        parser.error(f"unknown stacks {unknown}; choose from {list(STACKS)}")
    return args


def _policies(args: argparse.Namespace) -> Iterable[tuple[str, Benchmark]]:
    yield f"tofu_{args.tofu_split}", load_benchmark(
        "tofu", args.data_dir, split=args.tofu_split, seed=args.seed)
    rwku = load_benchmark("rwku", args.data_dir, n_targets=args.rwku_targets,
                          target_ids=args.rwku_ids, forget_levels=(2, 3), seed=args.seed)
    yield f"rwku_{len(rwku.targets)}_targets", rwku


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the attack suite, print the tables and write ``--out`` (JSON) and its ``.md``."""
    args = _args(argv)
    started = time.time()
    stacks = {s: STACKS[s] for s in args.stacks.split(",")}
    state_dir = args.state_dir or cache_dir() / "attacks-state"
    with asyncio.Runner() as loop:
        policies = {name: measure_policy(name, bench, stacks=stacks, limit=args.limit,
                                         seed=args.seed, state_dir=state_dir, loop=loop,
                                         benign=args.benign)
                    for name, bench in _policies(args)}
    command = " ".join(["python -m benchmarks.attacks", *(sys.argv[1:] if argv is None else argv)])
    report = {"provenance": provenance(
        started, command=command, limit=args.limit, seed=args.seed, embedder=EMBEDDER_NAME,
        model="compliant gold-answer oracle (benchmarks.harness.backends.OracleBackend)",
        stacks={s: [m.model_dump() for m in methods] for s, methods in stacks.items()},
        stack_settings=_settings(stacks)), "policies": policies}
    markdown = render_markdown(report)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
