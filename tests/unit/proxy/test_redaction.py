"""Log record redaction: secrets out of messages, arguments and tracebacks, never a raise."""

from __future__ import annotations

import logging

from proxy.core.redaction import _redact_record, install_log_redaction, register_secret

SECRET = "unit-secret-of-no-known-shape"


def _record(msg: object, args: tuple[object, ...] = (), exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("unlearn_proxy.test", logging.ERROR, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def _formatted(record: logging.LogRecord) -> str:
    return logging.Formatter("%(message)s").format(record)


def test_arguments_are_redacted_one_by_one() -> None:
    register_secret(SECRET)
    record = _record("%s from %s:%d", (f"key {SECRET}", "host", 8000))
    _redact_record(record)
    assert record.args == ("key ***", "host", 8000)
    assert _formatted(record) == "key *** from host:8000"


def test_a_secret_in_the_format_string_or_a_repr_is_redacted() -> None:
    register_secret(SECRET)
    for record in (_record(f"raw {SECRET}"), _record("%r", ([SECRET],)), _record(ValueError(SECRET))):
        _redact_record(record)
        assert SECRET not in _formatted(record) and "***" in _formatted(record)


def test_tracebacks_are_formatted_redacted() -> None:
    register_secret(SECRET)
    try:
        raise RuntimeError(f"embedder said Bearer {SECRET} and sk-abcdefghijkl")
    except RuntimeError as exc:
        record = _record("guard failed", exc_info=(type(exc), exc, exc.__traceback__))
    _redact_record(record)
    text = _formatted(record)
    assert record.exc_info is None and "Traceback" in text and "RuntimeError" in text
    assert SECRET not in text and "sk-abcdefghijkl" not in text and "Bearer ***" in text


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_installed_redaction_covers_every_logger_and_never_raises() -> None:
    register_secret(SECRET)
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper
    kept = _Kept()
    logger = logging.getLogger("some.library.child")
    logger.addHandler(kept)
    try:
        logger.error("token %s", SECRET)
        logger.error("%s and %s", "only one")  # a bad format is replaced, not raised
    finally:
        logger.removeHandler(kept)
    assert kept.lines == ["token ***", "(a log record of some.library.child that cannot be redacted)"]
