"""Secrets out of every message that reaches a client or a log: one function, :func:`redact`.

It replaces every registered secret (the upstream and embedder keys, the admin key) and
anything shaped like a key (``sk-…``, ``Bearer …``) with ``***``. The server applies it to
every error envelope (JSON and SSE) and to the log lines that carry upstream text.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
_KEY_SHAPED = re.compile(r"(?i)(\bbearer\s+)[^\s\"',;}]+|\bsk-[A-Za-z0-9_\-]{6,}")
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact ``value`` from now on (values shorter than 4 characters are not secrets)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and key-shaped token replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _KEY_SHAPED.sub(lambda m: f"{m.group(1)}{MASK}" if m.group(1) else MASK, text)
