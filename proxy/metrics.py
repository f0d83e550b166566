"""Prometheus metrics of one app instance (its own registry, so apps never share counters)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from starlette.responses import Response

from filters.embedder import embedder_circuits, embedder_stats
from proxy.core.errors import ProxyError

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class EmbedderCollector(Collector):
    """The process-wide embedders' batching: batches, texts, and seconds spent embedding (the
    rate of those seconds is the embedder's busy share; texts over batches is the mean batch);
    and their circuit breakers."""

    def collect(self) -> Iterator[Metric]:
        stats = embedder_stats()
        families = [
            (CounterMetricFamily("unlearn_embedding_batches", "Embedding batches run",
                                 labels=["embedder"]), "batches"),
            (CounterMetricFamily("unlearn_embedding_texts", "Texts embedded in batches",
                                 labels=["embedder"]), "texts"),
            (CounterMetricFamily("unlearn_embedding_busy_seconds", "Seconds spent embedding",
                                 labels=["embedder"]), "busy_s"),
        ]
        for family, field in families:
            for model_id, figures in stats.items():
                family.add_metric([model_id], getattr(figures, field))
            yield family
        circuits = embedder_circuits()
        is_open = GaugeMetricFamily(
            "unlearn_embedder_circuit_open",
            "1 while the embedder's circuit is open (guards fail fast: fail_mode decides)",
            labels=["embedder"])
        opened = CounterMetricFamily(
            "unlearn_embedder_circuit_opened", "Times the embedder's circuit opened",
            labels=["embedder"])
        rejected = CounterMetricFamily(
            "unlearn_embedder_circuit_rejected", "Embedding calls failed fast by an open circuit",
            labels=["embedder"])
        for model_id, breaker in circuits.items():
            is_open.add_metric([model_id], float(breaker.state != "closed"))
            opened.add_metric([model_id], breaker.opened)
            rejected.add_metric([model_id], breaker.rejected)
        yield from (is_open, opened, rejected)


class Metrics:
    """The counters and histograms exposed at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "unlearn_requests_total", "HTTP requests", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "unlearn_request_latency_seconds", "End-to-end request latency", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.upstream_latency = Histogram(
            "unlearn_upstream_latency_seconds", "Backend latency (to the last byte)", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.errors = Counter("unlearn_errors_total", "Errors by type", ["type"], registry=r)
        self.decisions = Counter(
            "unlearn_decisions_total", "Guard decisions", ["policy", "method", "action"], registry=r
        )
        self.transforms = Counter(
            "unlearn_guard_transforms_total", "Blocks by the view of the text the target was "
            "found in (plain, base64, reversed, …; filters.canonical)",
            ["policy", "method", "transform"], registry=r)
        self.guard_latency = Histogram(
            "unlearn_guard_latency_seconds", "Time spent in one guard", ["guard"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.guard_failures = Counter(
            "unlearn_guard_failures_total", "Guards that raised", ["policy", "guard", "fail_mode"],
            registry=r,
        )
        self.speculations = Counter(
            "unlearn_speculations_total",
            "Upstream calls started before the input guards decided, by what became of them",
            ["policy", "outcome"], registry=r,
        )
        self.icul_tokens = Histogram(
            "unlearn_icul_prompt_tokens", "Prompt tokens added by in-context unlearning",
            buckets=(0, 50, 100, 200, 400, 800, 1600, 3200), registry=r,
        )
        self.sanitised = Counter(
            "unlearn_sanitised_strings_total",
            "Client strings whose invalid code points were replaced by U+FFFD", registry=r,
        )
        self.reloads = Counter(
            "unlearn_config_reloads_total", "Config reloads", ["result"], registry=r
        )
        self.restart_needed = Counter(
            "unlearn_config_restart_needed_total",
            "Applied reloads that changed a server setting only a restart applies", ["setting"],
            registry=r,
        )
        r.register(EmbedderCollector())

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    async def counted(self, endpoint: str, answer: Awaitable[Response]) -> Response:
        """``answer``'s response, its status and latency counted as ``endpoint``'s (an error
        the server renders counts with its status, anything else as a 500)."""
        started = time.perf_counter()
        status = 500
        try:
            response = await answer
            status = response.status_code
            return response
        except ProxyError as exc:
            status = exc.status_code
            raise
        finally:
            self.requests.labels(endpoint, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)
