"""Provenance recorded with every benchmark result: when, where, with which code and packages."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.processes import REPO

PACKAGES = (
    "torch", "transformers", "llama_cpp_python", "sentence-transformers", "faiss-cpu",
    "scikit-learn", "fastapi", "httpx", "numpy", "onnxruntime", "onnx", "tokenizers", "litellm",
)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        return None


def provenance(started: float, **extra: Any) -> dict[str, Any]:
    """Schema version, times, git commit (+ dirty flag), host, package versions, and ``extra``."""
    ended = time.time()
    iso = lambda t: datetime.fromtimestamp(t, tz=timezone.utc).isoformat()  # noqa: E731
    return {
        "schema_version": 1,
        "started_utc": iso(started),
        "ended_utc": iso(ended),
        "wall_time_s": round(ended - started, 3),
        "git_commit": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(_git("status", "--porcelain")),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(), "gpu": _gpu()},
        "packages": {name: _version(name) for name in PACKAGES},
        **extra,
    }


def write_report(out: str | os.PathLike[str], report: dict[str, Any], markdown: str) -> None:
    """Write ``report`` as JSON to ``out`` and ``markdown`` beside it (``.md``), then print the
    Markdown."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
