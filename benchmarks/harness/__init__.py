"""The comparison harness: ``unlearn-proxy bench --config BENCH.yaml``.

Methods (policies now, weight-based baselines through :data:`METHOD_KINDS`) answer benchmark
probes through the proxy's own pipeline, in-process or over HTTP; the run is cached per
dataset × method × knob value × seed and ends in JSON, Markdown, PNG and HTML reports.
"""

from __future__ import annotations

from benchmarks.harness.config import BenchConfig, load_bench_config, parse_bench_config
from benchmarks.harness.methods import METHOD_KINDS, Variant, VariantBuilder
from benchmarks.harness.run import run_bench, run_from_file

__all__ = ["BenchConfig", "METHOD_KINDS", "Variant", "VariantBuilder", "load_bench_config",
           "parse_bench_config", "run_bench", "run_from_file"]
