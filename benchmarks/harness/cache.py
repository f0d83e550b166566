"""Resumable results: one JSON Lines file per dataset × method × knob value × seed.

Each line is one answered request, keyed by the request's content hash, appended and flushed
as soon as it exists, so a crashed or interrupted run continues where it stopped. The file name
carries a fingerprint of everything that could change an answer (model, generation settings,
policy, dataset selection, transport, and the guards' code); a changed config starts a new file rather than reusing
stale answers. A torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

import filters

__all__ = ["ResultCache", "fingerprint", "guard_code_digest"]

log = logging.getLogger("unlearn_proxy.bench")


def fingerprint(*parts: Any) -> str:
    """A short sha256 of JSON-serialisable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@cache
def guard_code_digest() -> str:
    """A sha256 of the guards' source and data files (``filters/``): a variant with methods
    keeps its cached answers only while the code that decides them is unchanged."""
    root = Path(filters.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".txt")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class ResultCache:
    """Request key -> JSON record, backed by an append-only JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self._load()
        self.resumed = len(self._records)

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                    self._records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s line %d: unreadable record ignored", self.path, number)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record for ``key``, if any."""
        return self._records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store and append ``record`` under ``key``."""
        record = {"key": key, **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
        self._records[key] = record

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"ResultCache({str(self.path)!r}, records={len(self)}, resumed={self.resumed})"
