"""The comparison harness: config errors, probe hygiene, sweeps, resume, matching, and the
`make bench-smoke` run with its artefacts checked against a direct run of the model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.datasets import Benchmark, Probe, load_benchmark
from benchmarks.harness.backends import OracleBackend, RecordingBackend
from benchmarks.harness import cache as result_cache
from benchmarks.harness.cache import ResultCache
from benchmarks.harness.config import DatasetSpec, MethodSpec, load_bench_config, parse_bench_config
from benchmarks.harness.methods import model_variants, policy_variants
from benchmarks.harness.policies import base_policy, split_probes
from benchmarks.harness.runner import Outcome, run_tasks
from benchmarks.harness.scoring import METRIC_INFO, Row, known_probes, score_outcomes
from benchmarks.harness.tasks import probe_task
from benchmarks.metrics.base import mean
from benchmarks.metrics.mcq import mcq_accuracy
from benchmarks.metrics.refusal import over_refusal_rate, refusal_rate
from benchmarks.metrics.rouge import rouge_l_recall
from benchmarks.processes import REPO
from proxy.backends.base import Capabilities
from proxy.core.types import Generation, GenerationParams, Usage
from proxy.core.config import ForgetTargetConfig, InputDetectorConfig, PolicyConfig
from proxy.core.errors import ConfigError
from proxy.pipeline import Request

SMOKE = REPO / "benchmarks" / "configs" / "smoke.yaml"
DEFAULT = REPO / "benchmarks" / "configs" / "default.yaml"
MINIMAL: dict[str, Any] = {
    "name": "t", "model": {"backend": "llama_cpp"}, "datasets": [{"name": "rwku"}],
    "methods": [{"name": "none"}, {"name": "det", "policy": [{"type": "input_detector"}],
                                   "knob": "input_detector.threshold", "values": [0.5, 0.7]}],
}


# config -------------------------------------------------------------------------------------


def test_shipped_configs_validate() -> None:
    smoke, default = load_bench_config(SMOKE), load_bench_config(DEFAULT)
    assert smoke.reference.name == default.reference.name == "none"


@pytest.mark.parametrize(("change", "where"), [
    (lambda c: c["methods"][1].update(typo=1), "methods.1.typo"),
    (lambda c: c["methods"][1].update(knob="prefix.template"), "methods.1"),
    (lambda c: c["methods"][1].update(knob="input_detector.nope"), "has no field 'nope'"),
    (lambda c: c["methods"].append({"name": "none2"}), "methods: Value error, needs exactly one"),
    (lambda c: c["methods"].append({"name": "x", "kind": "telepathy"}), "methods.2.kind"),
    (lambda c: c["datasets"][0].update(mode="detect") or c.update(transport="http"),
     "datasets.0.mode"),
    (lambda c: c["datasets"][0].update(loader={"limit": 3}), "datasets.0"),
    (lambda c: c.update(transport="carrier-pigeon"), "transport"),
    (lambda c: c["methods"][1].update(reference="nobody"), "reference 'nobody' is not a method"),
    (lambda c: c["methods"][1].update(datasets=["tofu"]), "methods.1.datasets: tofu is not"),
    (lambda c: c["methods"][0].update(datasets=["rwku"]), "the no-defence row runs on every"),
    (lambda c: c["datasets"].append({"name": "tofu"}) or c["methods"][1].update(
        datasets=["tofu"]) or c["methods"].append({"name": "x", "policy": [{"type": "prefix"}], "reference": "det"}),
     "methods.2.reference: 'det' does not run on rwku"),
    (lambda c: c["datasets"][0].update(mode="detect") or c["methods"].append(
        {"name": "hf", "kind": "model", "options": {"backend": "transformers"}}),
     "datasets.0.mode 'detect' scores guards against an oracle model; hf serve"),
])
def test_config_errors_name_the_field(change: Any, where: str) -> None:
    config = json.loads(json.dumps(MINIMAL))
    change(config)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        parse_bench_config(config, source="bench.yaml")


def test_knob_values_become_variants_and_bad_values_raise() -> None:
    base = PolicyConfig(forget=[ForgetTargetConfig(id="a", name="A")])
    benchmark = Benchmark("b", targets=())
    spec = MethodSpec(name="det", policy=[{"type": "input_detector"}],
                      knob="input_detector.threshold", values=[0.5, 0.75])
    variants = policy_variants(spec, base, benchmark)
    assert [v.label for v in variants] == ["det@0.5", "det@0.75"]
    assert [v.policy.methods[0] for v in variants if v.policy] == [
        InputDetectorConfig(type="input_detector", threshold=t) for t in (0.5, 0.75)]
    with pytest.raises(ConfigError, match="threshold=2"):
        policy_variants(spec.model_copy(update={"values": [2.0]}), base, benchmark)
    assert policy_variants(MethodSpec(name="none"), base, benchmark)[0].policy is None


def test_model_rows_serve_another_engine_without_a_policy() -> None:
    base = PolicyConfig(forget=[ForgetTargetConfig(id="a", name="A")])
    benchmark = Benchmark("b", targets=())
    spec = MethodSpec(name="hf", kind="model", options={"backend": "transformers",
                                                        "batch_size": 4})
    [variant] = model_variants(spec, base, benchmark)
    assert variant.policy is None and variant.model is not None
    assert variant.model.backend == "transformers" and variant.model.batch_size == 4
    with pytest.raises(ConfigError, match=r"method 'hf': options\.transformers\.batch_size"):
        model_variants(spec.model_copy(update={"options": {"backend": "transformers",
                                                           "batch_size": 0}}), base, benchmark)
    with pytest.raises(ConfigError, match="no knob"):
        model_variants(spec.model_copy(update={"knob": "alpha", "values": [1.0]}), base,
                       benchmark)


# probe hygiene --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "loader"), [("rwku", {"target_ids": [1]}),
                                              ("tofu", {"split": "forget01"})])
def test_policy_material_never_contains_scored_probes(name: str, loader: dict[str, Any]) -> None:
    spec = DatasetSpec(name=name, loader=loader,
                       candidates={"forget": None, "neighbour": None, "retain": 50})
    benchmark = load_benchmark(name, **loader)
    split = split_probes(benchmark, spec, seed=0)
    policy = base_policy(benchmark, split, spec)
    given = {qa.question for t in policy.forget for qa in t.questions}
    given |= {qa.question for qa in policy.retain}
    scored = {p.question for probes in split.candidates.values() for p in probes}
    assert split.material["forget"] and split.candidates["forget"]
    assert given and not given & scored
    assert split_probes(benchmark, spec, seed=0) == split


def test_known_probes_keeps_what_the_reference_answers() -> None:
    probes = [Probe(id=str(i), question="q", answer=a, kind="forget")
              for i, a in enumerate(["Paris", "Stephen King"])]
    outcomes = {"0": _outcome(" Paris, France"), "1": _outcome(" Mr. King")}
    assert [p.id for p in known_probes(probes, outcomes, 0.5)] == ["0", "1"]
    assert [p.id for p in known_probes(probes, outcomes, 0.9)] == ["0"]
    assert len(known_probes(probes, outcomes, None)) == 2


def test_score_outcomes_reads_open_and_lettered_answers() -> None:
    forget = [Probe(id="f1", question="Who?", answer="Stephen King", kind="forget"),
              Probe(id="f2", question="Pick", answer="b", kind="forget", choices=("a", "b"),
                    correct_index=1)]
    neighbour = [Probe(id="n1", question="Where?", answer="Maine", kind="neighbour")]
    outcomes = {"f1": _outcome(" Stephen King."), "f2": _outcome(" A"),
                "n1": _outcome(" I'm sorry, I don't know.")}
    row = Row("d", "m", "m", None, None)
    score_outcomes(row, {"forget": forget, "neighbour": neighbour}, outcomes, detect=False,
                   refusal_text="No comment.")
    assert row.metrics == {"forget_mcq": 0.0, "forget_rouge_l": 1.0, "forget_refusal": 0.0,
                           "neighbour_rouge_l": 0.0, "neighbour_over_refusal": 1.0}
    assert row.n["forget_refusal"] == 2 and row.n["forget_mcq"] == 1


# running ------------------------------------------------------------------------------------


def _outcome(text: str, blocked: bool = False) -> Outcome:
    return Outcome(text, "stop", blocked, 10, 2, added_ms=1.0, total_ms=5.0)


class _CountingAsker:
    def __init__(self) -> None:
        self.calls = 0

    async def ask(self, request: Request) -> Outcome:
        self.calls += 1
        return _outcome(f"answer to {request.prompt}")


def test_run_tasks_resumes_from_the_cache(tmp_path: Path) -> None:
    settings = load_bench_config(SMOKE).generation
    probes = [Probe(id=f"p{i}", question=f"Q{i}?", answer="A", kind="forget") for i in range(3)]
    tasks = [probe_task("tofu", p, settings, model="m", seed=0) for p in probes]
    path = tmp_path / "cache.jsonl"
    asker = _CountingAsker()
    with asyncio.Runner() as loop:
        first = run_tasks(loop, asker, tasks, ResultCache(path), desc="t")
        with path.open("a", encoding="utf-8") as handle:
            handle.write('{"key": "torn')  # a crash mid-write
        again = run_tasks(loop, asker, tasks, ResultCache(path), desc="t")
    assert asker.calls == 3
    assert first == again and first[tasks[0].key].text.startswith("answer to Question: Q0?")
    assert all(o.cost_ms >= o.total_ms > 0 for o in again.values())  # costs survive a resume


def test_the_guards_code_is_part_of_a_cached_answer_s_key(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers decided by guards are not reused once the guards' code changes (a stale cache
    once reported the previous head's rates for a changed scope check)."""
    package = tmp_path / "filters"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "guard.py").write_text("THRESHOLD = 0.5\n")
    monkeypatch.setattr(result_cache.filters, "__file__", str(package / "__init__.py"))
    result_cache.guard_code_digest.cache_clear()
    before = result_cache.guard_code_digest()
    (package / "guard.py").write_text("THRESHOLD = 0.6\n")
    result_cache.guard_code_digest.cache_clear()
    assert result_cache.guard_code_digest() != before
    result_cache.guard_code_digest.cache_clear()


class _FakeEngine:
    capabilities = Capabilities()
    calls = 0

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        self.calls += 1
        return Generation(prompt[::-1], "stop", Usage(1, 1))


def test_recording_backend_memoises_greedy_calls_only() -> None:
    engine = _FakeEngine()
    backend = RecordingBackend(engine)  # type: ignore[arg-type]
    greedy, sampled = GenerationParams(temperature=0.0), GenerationParams(temperature=1.0)
    with asyncio.Runner() as loop:
        for params in (greedy, greedy, sampled, sampled):
            assert loop.run(backend.complete("abc", params)).text == "cba"
    assert engine.calls == 3


def test_oracle_answers_the_gold_for_a_prefixed_prompt() -> None:
    oracle = OracleBackend({"Question: Who?\nAnswer:": "Ada"})
    with asyncio.Runner() as loop:
        answer = loop.run(oracle.complete("System text.\n\nQuestion: Who?\nAnswer:",
                                          GenerationParams()))
    assert answer.text == " Ada"


# the smoke bench ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from proxy.cli import main

    out = tmp_path_factory.mktemp("bench-smoke")
    assert main(["bench", "--config", str(SMOKE), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_smoke_writes_every_artefact(smoke_dir: Path) -> None:
    report = json.loads((smoke_dir / "report.json").read_text(encoding="utf-8"))
    markdown = (smoke_dir / "report.md").read_text(encoding="utf-8")
    page = (smoke_dir / "report.html").read_text(encoding="utf-8")
    pngs = sorted(smoke_dir.glob("*.png"))
    assert pngs and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert page.count("data:image/png;base64,") == len(pngs) and "src=\"http" not in page
    prov = report["provenance"]
    assert prov["engine"] == "llama_cpp" and prov["model"]["sha256"] and prov["wall_time_s"] > 0
    labels = ["none", "prefix", "input_detector@0.45", "input_detector@0.7", "output_filter"]
    for dataset in report["datasets"]:
        assert [r["label"] for r in dataset["rows"]] == labels
        assert dataset["files_sha256"] and dataset["sizes"]["scored"]["forget"] > 0
        assert f"## {dataset['name']} ({dataset['mode']})" in markdown
    for label in labels:
        assert f"| {label} |" in markdown
    assert "Forget ROUGE-L ↓ [T]" in markdown and "Forget detected ↑ [T]" in markdown


def _share(flags: list[bool]) -> tuple[float, int]:
    return sum(flags) / len(flags), len(flags)


def _rescored(dataset: dict[str, Any], items: list[dict[str, Any]],
              reference: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """A row's metrics (value, n) recomputed from its recorded answers in ``items.jsonl``
    (every smoke policy keeps the default refusal text)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    expected = {"blocked_share": _share([i["blocked"] for i in items])}
    if dataset["mode"] == "detect":
        return expected | {f"{k}_blocked": _share([i["blocked"] for i in group])
                           for k, group in by_kind.items()}
    refusal = (str(PolicyConfig.model_fields["refusal_text"].default),)
    utility = {p.id: p for p in load_benchmark(dataset["name"], seed=0,
                                               **dataset["spec"]["loader"]).utility_probes}
    for kind, group in by_kind.items():
        texts = [i["text"].strip() for i in group]
        if kind == "utility":
            probes = [utility[i["probe_id"]] for i in group]
            expected["utility_mcq"] = (mcq_accuracy(texts, probes).value, len(group))
            continue
        expected[f"{kind}_rouge_l"] = (rouge_l_recall(texts, [i["answer"] for i in group]).value,
                                       len(group))
        name, rate = (("forget_refusal", refusal_rate) if kind == "forget"
                      else (f"{kind}_over_refusal", over_refusal_rate))
        expected[name] = (rate(texts, extra_phrases=refusal).value, len(group))
    tokens = [float(i["prompt_tokens"]) for i in items if i["prompt_tokens"] > 0]
    added = [float(i["prompt_tokens"] - r["prompt_tokens"])
             for i, r in zip(items, reference, strict=True)
             if i["prompt_tokens"] > 0 and r["prompt_tokens"] > 0]
    for name, values in (("prompt_tokens", tokens), ("added_prompt_tokens", added)):
        if values:  # only requests that reached the model count
            expected[name] = (mean(values), len(values))
    return expected


@pytest.mark.slow
def test_smoke_numbers_are_the_recorded_answers_scored(smoke_dir: Path) -> None:
    report = json.loads((smoke_dir / "report.json").read_text(encoding="utf-8"))
    items = [json.loads(line) for line in (smoke_dir / "items.jsonl").open(encoding="utf-8")]
    for dataset in report["datasets"]:
        mine = {r["label"]: [i for i in items if i["dataset"] == dataset["name"]
                             and i["variant"] == r["label"]] for r in dataset["rows"]}
        for row in dataset["rows"]:
            metrics = row["metrics"]
            assert all(m["tier"] == METRIC_INFO[name].tier for name, m in metrics.items())
            expected = _rescored(dataset, mine[row["label"]], mine["none"])
            assert {k: (m["value"], m["n"]) for k, m in metrics.items() if k in expected} == {
                k: (pytest.approx(v), n) for k, (v, n) in expected.items()}, row["label"]
            # not recomputable from the items: latency, and ES (it prefills answer prefixes)
            assert set(metrics) - set(expected) <= {"added_ms", "forget_es"}
            if "forget_es" in metrics:
                assert metrics["forget_es"]["n"] == expected["forget_rouge_l"][1]
                assert 0.0 <= metrics["forget_es"]["value"] <= 1.0
        rows = {r["label"]: r["metrics"] for r in dataset["rows"]}
        assert rows["none"]["blocked_share"]["value"] == 0.0
        if dataset["mode"] == "detect":
            assert rows["output_filter"]["forget_blocked"]["value"] > 0.5


@pytest.mark.slow
def test_no_defence_row_equals_a_direct_run_of_the_model(smoke_dir: Path) -> None:
    from proxy.backends import build_backend

    config = load_bench_config(SMOKE)
    items = [json.loads(line) for line in (smoke_dir / "items.jsonl").open(encoding="utf-8")]
    mine = [i for i in items if i["dataset"] == "rwku" and i["variant"] == "none"]
    settings = config.generation
    backend = build_backend("direct", config.model)
    with asyncio.Runner() as loop:
        direct = [loop.run(backend.complete(item["prompt"], GenerationParams(
            max_tokens=settings.mcq_max_tokens if item["kind"] == "utility"
            else settings.max_tokens, temperature=0.0, stop=tuple(settings.stop), seed=0)))
            for item in mine]
        loop.run(backend.aclose())
    assert [g.text for g in direct] == [i["text"] for i in mine]
    report = json.loads((smoke_dir / "report.json").read_text(encoding="utf-8"))
    none = next(r for r in report["datasets"][0]["rows"] if r["label"] == "none")
    forget = [(g.text.strip(), i["answer"]) for g, i in zip(direct, mine, strict=True)
              if i["kind"] == "forget"]
    expected = rouge_l_recall([t for t, _ in forget], [a for _, a in forget]).value
    assert none["metrics"]["forget_rouge_l"]["value"] == pytest.approx(expected)


def test_smoke_config_is_tiny() -> None:
    raw = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    assert all(sum(v for v in d["candidates"].values()) <= 30 for d in raw["datasets"])
