"""Starting servers as subprocesses on free loopback ports (benchmarks and tests share this)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_output(process: subprocess.Popen[bytes]) -> str:
    """What a server subprocess printed so far (its output goes to a temporary file)."""
    log = getattr(process, "log_file", None)
    if log is None:
        return ""
    log.seek(0)
    return str(log.read().decode("utf-8", "replace"))


def wait_healthy(
    url: str, *, timeout_s: float = 120.0, process: subprocess.Popen[bytes] | None = None,
    health_path: str = "/healthz",
) -> None:
    """Poll ``url`` + ``health_path`` until it answers; fail fast if ``process`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process_output(process)
            raise RuntimeError(f"server exited with {process.returncode}:\n{out[-4000:]}")
        try:
            if httpx.get(f"{url}{health_path}", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy within {timeout_s} s")


@contextmanager
def python_server(
    module_args: list[str], *, port: int, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``python -m <module_args>`` (which must listen on ``port``); yields (URL, process)."""
    with command_server([sys.executable, "-m", *module_args], port=port, env=env,
                        timeout_s=timeout_s) as served:
        yield served


@contextmanager
def command_server(
    command: list[str], *, port: int, env: dict[str, str] | None = None, timeout_s: float = 120.0,
    health_path: str = "/healthz",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``command`` (a server that must listen on ``port`` and answer ``health_path``) from
    the repository root; yields (URL, process), then terminates it (kills it after 15 s)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    log_file = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=REPO, env=full_env,
                               stdout=log_file, stderr=subprocess.STDOUT)
    process.log_file = log_file  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process=process, timeout_s=timeout_s, health_path=health_path)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_file.close()


@contextmanager
def proxy_server(
    config_path: Path | None, *, env: dict[str, str] | None = None, extra_args: list[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``unlearn-proxy serve`` as a subprocess; yields (URL, process)."""
    port = free_port()
    args = ["proxy.cli", "serve", "--port", str(port), "--log-level", "warning"]
    if config_path is not None:
        args += ["--config", str(config_path)]
    with python_server(args + (extra_args or []), port=port, env=env) as served:
        yield served
