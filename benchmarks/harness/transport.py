"""Deploying variants: on one in-process pipeline, or behind one real ``unlearn-proxy serve``.

Both put every variant of a dataset into one proxy configuration: each variant with a policy
becomes a named policy, each variant with its own model a named model. In-process, a variant
is a policy name on a shared :class:`~proxy.pipeline.Pipeline`; over HTTP, it is a client key
that ``routing.api_keys`` sends to that policy (the no-defence key routes to no policy).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import yaml

from benchmarks.harness.backends import RecordingBackend
from benchmarks.harness.config import BenchConfig
from benchmarks.harness.methods import Variant
from benchmarks.harness.runner import Asker, HttpAsker, InProcessAsker
from benchmarks.processes import free_port, python_server
from proxy.backends import build_backend
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime
from proxy.policy import compile_policy

__all__ = ["Deployment", "HttpDeployment", "InProcessDeployment", "proxy_config", "serve_http"]

HTTP_TIMEOUT_S = 600.0
SERVER_START_TIMEOUT_S = 900.0  # compiling policies on a busy 2-core machine takes minutes


class Deployment(Protocol):
    """Gives each variant an :class:`~benchmarks.harness.runner.Asker`."""

    def asker(self, variant: Variant) -> Asker: ...


def _model_name(config: BenchConfig, variant: Variant) -> str:
    return config.model_name if variant.model is None else f"{config.model_name}--{variant.slug}"


class InProcessDeployment:
    """All variants on one pipeline over ``backend`` (the bench model, already loaded).

    A variant with its own model (a baseline's weights) has it loaded when its asker is made,
    and the previously loaded one closed first: at most one such model is in memory at a time.
    """

    def __init__(self, config: BenchConfig, variants: Sequence[Variant], *,
                 backend: RecordingBackend, state_dir: Path, loop: asyncio.Runner) -> None:
        self.config, self.loop = config, loop
        self._own_model: str | None = None
        policies = {v.slug: cast(PolicyRuntime, compile_policy(
            v.slug, v.policy, base_dir=Path.cwd(), state_dir=state_dir))
            for v in variants if v.policy is not None}
        self.pipeline = Pipeline(backends={config.model_name: backend}, policies=policies,
                                 metrics=Metrics(), store=None)

    def asker(self, variant: Variant) -> InProcessAsker:
        model = _model_name(self.config, variant)
        backends = self.pipeline.backends
        if variant.model is not None and model not in backends:
            self._close_own_model()
            backends[model] = RecordingBackend(build_backend(model, variant.model))
            self._own_model = model
        return InProcessAsker(self.pipeline, variant.slug if variant.policy else None,
                              model=model, backend=cast(RecordingBackend, backends[model]))

    def _close_own_model(self) -> None:
        if self._own_model is not None:
            self.loop.run(self.pipeline.backends.pop(self._own_model).aclose())
            self._own_model = None

    def close(self) -> None:
        """Close the variants' own model (the bench model belongs to the caller)."""
        self._close_own_model()


class HttpDeployment:
    """Variants behind a running proxy at ``url``."""

    def __init__(self, config: BenchConfig, url: str, client: httpx.AsyncClient) -> None:
        self.config, self.url, self.client = config, url, client

    def asker(self, variant: Variant) -> HttpAsker:
        return HttpAsker(self.client, self.url, _api_key(variant),
                         model=_model_name(self.config, variant))


def _api_key(variant: Variant) -> str:
    return f"sk-bench-{variant.slug}"


def proxy_config(config: BenchConfig, variants: Sequence[Variant],
                 state_dir: Path) -> dict[str, Any]:
    """The ``unlearn-proxy serve`` config that serves every variant."""
    models = {config.model_name: config.model.model_dump(mode="json")}
    models.update({_model_name(config, v): v.model.model_dump(mode="json")
                   for v in variants if v.model is not None})
    return {
        "server": {"state_dir": str(state_dir), "api_keys": [_api_key(v) for v in variants]},
        "models": models,
        "policies": {v.slug: v.policy.model_dump(mode="json") for v in variants if v.policy},
        "routing": {"api_keys": {_api_key(v): v.slug for v in variants if v.policy}},
    }


@contextmanager
def serve_http(config: BenchConfig, variants: Sequence[Variant], *, loop: asyncio.Runner,
               work_dir: Path, state_dir: Path) -> Iterator[HttpDeployment]:
    """Start a proxy subprocess serving ``variants``; stops it on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "proxy.yaml"
    path.write_text(yaml.safe_dump(proxy_config(config, variants, state_dir), sort_keys=False,
                                   allow_unicode=True), encoding="utf-8")
    port = free_port()
    args = ["proxy.cli", "serve", "--config", str(path), "--port", str(port), "--no-watch",
            "--log-level", "warning"]
    with python_server(args, port=port, timeout_s=SERVER_START_TIMEOUT_S) as (url, _process):
        client = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        try:
            yield HttpDeployment(config, url, client)
        finally:
            loop.run(client.aclose())
