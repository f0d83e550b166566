"""Shared fixtures: real servers with the real embedded model, started once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from proxy.core.config import Config, parse_config  # noqa: E402
from proxy.server import create_app  # noqa: E402
from tests.servers import thread_server  # noqa: E402

CLIENT_KEY = "sk-test-client-key"
ADMIN_KEY = "sk-test-admin-key"


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Tiny torch models run faster on one thread, far faster on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


def embedded_config(state_dir: Path, **server: object) -> Config:
    """The embedded Gemma model behind the llama.cpp engine, with no policy."""
    return parse_config(
        {
            "server": {"state_dir": str(state_dir), **server},
            "models": {"gemma": {"backend": "llama_cpp", "max_tokens_default": 32}},
        }
    )


@pytest.fixture(scope="session")
def llama_url(session_dir: Path) -> Iterator[str]:
    """An unlearn-proxy serving the embedded model, requiring CLIENT_KEY."""
    config = embedded_config(session_dir / "llama", api_keys=[CLIENT_KEY], max_body_bytes=200_000)
    with thread_server(create_app(config)) as url:
        yield url
