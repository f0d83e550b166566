"""Locate the shared benchmark data directory and hash its files."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.errors import DatasetError
from proxy.core.files import file_sha256

__all__ = ["DATA_DIR_ENV", "resolve_data_dir", "sha256_file"]

DATA_DIR_ENV = "UNLEARN_DATA_DIR"


def _default_data_dir() -> Path:
    repo_root = Path(__file__).resolve().parent.parent
    return repo_root.parent / "shared" / "data"


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the benchmark data directory.

    Order: ``explicit``, then the ``UNLEARN_DATA_DIR`` environment variable, then
    ``<repo root>/../shared/data``. Raises ``DatasetError`` when the chosen directory does not
    exist, or when nothing is configured and the default is absent.
    """
    if explicit is not None:
        chosen, source = Path(explicit), "the data_dir argument"
    elif os.environ.get(DATA_DIR_ENV):
        chosen, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        chosen = _default_data_dir()
        if not chosen.is_dir():
            raise DatasetError(
                f"no benchmark data directory: {chosen} does not exist; pass data_dir=... or set "
                f"{DATA_DIR_ENV} to the folder holding tofu/, rwku/, wmdp/ and muse/"
            )
        return chosen
    if not chosen.is_dir():
        raise DatasetError(f"benchmark data directory {chosen} (from {source}) is not a directory")
    return chosen


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file's bytes; raises ``DatasetError`` if it cannot be read."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc