"""Entry points: ``run_from_file`` (what ``unlearn-proxy bench`` calls) and ``run_bench``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.data_dir import resolve_data_dir, sha256_file
from benchmarks.harness.backends import RecordingBackend
from benchmarks.harness.config import BenchConfig, load_bench_config
from benchmarks.harness.evaluate import BenchContext, DatasetResult, evaluate_dataset
from benchmarks.harness.report import build_report, write_report
from benchmarks.processes import REPO
from benchmarks.provenance import provenance
from proxy.backends import build_backend
from proxy.core.embedded import cache_dir, embedded_gguf_sha256

__all__ = ["run_bench", "run_from_file"]

log = logging.getLogger("unlearn_proxy.bench")


def _model_provenance(config: BenchConfig) -> dict[str, Any]:
    model = config.model
    path = getattr(model, "model_path", None)
    if model.backend == "openai":
        sha = None
    elif path is None:
        sha = embedded_gguf_sha256()
    else:
        sha = sha256_file(path) if Path(path).is_file() else None
    return {"name": config.model_name, "config": model.model_dump(mode="json"),
            "sha256": sha, "embedded": model.backend != "openai" and path is None}


def _needs_engine(config: BenchConfig) -> bool:
    return config.transport == "in_process" and any(d.mode == "generate" for d in config.datasets)


def run_bench(config: BenchConfig, *, data_dir: str | os.PathLike[str] | None = None,
              out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Run every dataset and method of ``config``; returns the path of ``report.json``.

    Answers are cached under ``<out_dir>/cache`` (resumable). Raises ConfigError /
    BenchmarkError subclasses on bad configs, data or engines.
    """
    started = time.time()
    target = Path(out_dir or config.out_dir or REPO / "benchmarks" / "results" / config.name)
    state_dir = Path(config.state_dir) if config.state_dir else cache_dir() / "bench-state"
    resolved = resolve_data_dir(data_dir)
    results: list[DatasetResult] = []
    with asyncio.Runner() as loop:
        ctx = BenchContext(config, loop, target, state_dir, resolved)
        if _needs_engine(config):
            log.info("loading %s (%s)", config.model_name, config.model.backend)
            ctx.backend = RecordingBackend(build_backend(config.model_name, config.model))
        try:
            for spec in config.datasets:
                log.info("dataset %s (%s)", spec.key, spec.mode)
                results.append(evaluate_dataset(ctx, spec))
        finally:
            if ctx.backend is not None:
                loop.run(ctx.backend.aclose())
    prov = provenance(started, run_id=uuid.uuid4().hex[:12], engine=config.model.backend,
                      model=_model_provenance(config), seed=config.seed,
                      transport=config.transport, data_dir=str(resolved),
                      model_calls=ctx.backend.calls if ctx.backend else None)
    report = build_report(results, config, target, prov)
    items = [item for result in results for item in result.items]
    path = write_report(report, items, target)
    log.info("report: %s (%.0f s)", target / "report.html", time.time() - started)
    return path


def run_from_file(config_path: str | os.PathLike[str], *,
                  data_dir: str | os.PathLike[str] | None = None,
                  out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Load a bench YAML and run it (``unlearn-proxy bench --config ...``)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return run_bench(load_bench_config(config_path), data_dir=data_dir, out_dir=out_dir)
