"""Secrets out of every message that reaches a client or a log: one function, :func:`redact`.

It replaces every registered secret (the upstream and embedder keys, the admin key) and
anything shaped like a key (``sk-…``, ``Bearer …``) with ``***``. The server applies it to
every error envelope (JSON and SSE), and :func:`install_log_redaction` to every log record of
the process (messages, arguments, tracebacks: an embedder's or an HTTP client's exception can
carry a key).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

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


_installed = False


def install_log_redaction() -> None:
    """From now on, redact every log record this process makes (idempotent).

    It wraps the log record factory rather than adding a ``logging.Filter``: a logger's filter
    never sees the records of its child loggers, and uvicorn replaces its handlers when it
    starts. The traceback is formatted and redacted as the record is made, so no handler ever
    formats the raw one.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    make = logging.getLogRecordFactory()

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            _redact_record(record)
        except Exception:  # a bad format or a raising __str__: never the raw text, never raise
            record.msg, record.args = f"(a log record of {record.name} that cannot be redacted)", ()
            record.exc_info = record.exc_text = record.stack_info = None
        return record

    logging.setLogRecordFactory(redacted_record)


def _redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.args, tuple):  # arguments one by one: formatters may unpack them
        record.args = tuple(_redacted_argument(a) for a in record.args)
    message = record.getMessage()
    clean = redact(message)
    if clean != message:  # a secret in the format string, a mapping or a repr
        record.msg, record.args = clean, ()
    if record.exc_info:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _redacted_argument(value: object) -> object:
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)
    clean = redact(text)
    return value if clean == text else clean
