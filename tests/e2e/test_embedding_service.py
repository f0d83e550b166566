"""Embeddings as a service (issue 20, item 5): replicas whose guards embed through a real
embedding server process, so none of them holds the model.

The service is an unlearn-proxy process serving the embedded Gemma, whose ``/v1/embeddings``
answers with the embedded MiniLM (``docs``: README, "Endpoints"); two proxy processes use it as
their policy's embedder (``embedder: {type: openai, base_url: …}``). Their input detector blocks
a paraphrase of a forget question and answers a neighbour, the same as with a local embedder,
and neither starts an embedding worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from benchmarks.processes import proxy_server
from tests.policies import ROWLING
from tests.servers import stub_upstream_process

pytestmark = pytest.mark.slow


def _write(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], list[int]]]:
    tmp = tmp_path_factory.mktemp("embedding-service")
    with ExitStack() as stack:
        service_config = _write(tmp / "service.yaml", {
            "server": {"state_dir": str(tmp / "service")},
            "models": {"gemma": {"backend": "llama_cpp", "max_tokens_default": 8}}})
        service, _ = stack.enter_context(proxy_server(service_config, extra_args=["--no-watch"]))
        upstream = stack.enter_context(stub_upstream_process("--echo"))
        urls, pids = [], []
        for name in ("r1", "r2"):
            config = _write(tmp / f"{name}.yaml", {
                "server": {"state_dir": str(tmp / name)},
                "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
                "policies": {"p": {
                    "forget": [ROWLING], "methods": [{"type": "input_detector"}],
                    "embedder": {"type": "openai", "base_url": f"{service}/v1",
                                 "model": "gemma"}}},
                "routing": {"default_policy": "p"}})
            url, process = stack.enter_context(proxy_server(config, extra_args=["--no-watch"]))
            urls.append(url)
            pids.append(process.pid)
        yield urls, pids


def _decision(url: str, text: str) -> str:
    response = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "stub", "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.headers["x-unlearn-decision"]


def test_replicas_guard_through_the_embedding_service(
    replicas: tuple[list[str], list[int]]
) -> None:
    urls, pids = replicas
    for url in urls:
        assert _decision(url, "Which author created the boy wizard Harry Potter?") == "block"
        assert _decision(url, "Who wrote The Lord of the Rings?") == "allow"
    for pid in pids:  # no local embedding worker: the model lives in the service only
        assert psutil.Process(pid).children(recursive=True) == []
