"""Cache directories written atomically: built in a temporary sibling, marked, then renamed.

A crash leaves no half-written cache (a directory without the marker is rebuilt), and of two
processes building the same entry the first rename wins.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = ".complete"


def is_complete(target: Path) -> bool:
    """Whether ``target`` is a finished cache entry."""
    return (target / COMPLETE_MARKER).is_file()


def build_cached_dir(target: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first filling it with ``build(tmp_dir)`` unless it is complete."""
    if is_complete(target):
        return target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        build(tmp)
        (tmp / COMPLETE_MARKER).write_text(key + "\n")
        os.rename(tmp, target)
    except OSError:
        if not is_complete(target):  # not a concurrent build that won
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
