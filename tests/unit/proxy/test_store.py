"""The SQLite store: forget requests survive reopening; the audit log is append-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proxy.store import AuditRecord, SqliteStore


def test_forget_requests_round_trip_and_withdraw(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.add_forget("p", {"id": "a", "name": "Alice"})
    store.add_forget("p", {"id": "b", "name": "Bob"})
    store.add_forget("q", {"id": "a", "name": "Alice"})
    assert [r.target_id for r in store.forget_requests("p")] == ["a", "b"]
    assert store.withdraw_forget("p", "a") == 1
    assert store.withdraw_forget("p", "a") == 0
    store.close()
    reopened = SqliteStore(tmp_path / "s.sqlite3")
    assert [r.target_id for r in reopened.forget_requests("p")] == ["b"]
    everything = reopened.forget_requests("p", active_only=False)
    assert [(r.target_id, r.withdrawn_at is not None) for r in everything] == [("a", True), ("b", False)]
    assert reopened.forget_requests("q")[0].target == {"id": "a", "name": "Alice"}


def test_version_counts_changes_to_forget_requests_and_retain_removals(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    assert store.version == 0
    store.add_forget("p", {"id": "a", "name": "Alice"})
    store.withdraw_forget("p", "a")
    store.remove_retain("p", "Who?")
    assert store.version == 3
    store.append_audit(AuditRecord(request_id="r1", action="block"))
    store.forget_requests("p")
    assert store.version == 3


def test_records_of_a_noted_request_carry_its_origin(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    forget = store.note_origin("r1", actor="sha256:ab", model="m")
    store.append_audit(AuditRecord(request_id="r1", action="block"))
    store.append_audit(AuditRecord(request_id="r1", action="block", actor="sha256:cd"))
    store.append_audit(AuditRecord(request_id="r2", action="block"))
    forget()
    store.append_audit(AuditRecord(request_id="r1", action="block"))
    assert [(r["actor"], r["model"]) for r in store.audit()] == [
        ("sha256:ab", "m"), ("sha256:cd", None), (None, None), (None, None)]


def test_audit_is_append_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.append_audit(AuditRecord(request_id="r1", action="block", policy="p", method="alias",
                                   target_id="a", item="Alice", score=1.0))
    store.append_audit(AuditRecord(request_id="r2", action="block"))
    rows = store.audit()
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["prompt"] is None and rows[0]["target_id"] == "a"
    assert [r["request_id"] for r in store.audit(after_seq=rows[0]["seq"])] == ["r2"]
    raw = sqlite3.connect(tmp_path / "s.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit SET action = 'allow'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit")
    raw.close()


def test_wal_mode(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.sqlite3")
    mode = sqlite3.connect(tmp_path / "s.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
