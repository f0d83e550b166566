"""Durable state: runtime forget requests and the append-only audit log.

:class:`Store` is what the rest of the proxy uses; :class:`SqliteStore` keeps it in one SQLite
file (WAL mode) for one replica, :class:`proxy.store_postgres.PostgresStore` in PostgreSQL for
any number of them. Every write is committed before the call returns, so an acknowledged forget
request or audit record survives the process being killed. The audit table is append-only: no
store has a method that updates or deletes an audit row. It holds guard blocks and admin
actions, each with the fingerprint of the key that made the request (never the key) and, for
blocks, the model.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from proxy.core.config import StoreConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forget_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    withdrawn_at REAL
);
CREATE INDEX IF NOT EXISTS forget_active ON forget_requests(policy, withdrawn_at);
CREATE TABLE IF NOT EXISTS retain_removals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL,
    question TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    policy TEXT,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    method TEXT,
    target_id TEXT,
    item TEXT,
    score REAL,
    prompt TEXT,
    actor TEXT,
    model TEXT,
    transform TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


@dataclass(frozen=True)
class ForgetRequest:
    seq: int
    policy: str
    target_id: str
    target: dict[str, Any]
    created_at: float
    withdrawn_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "policy": self.policy,
            "target_id": self.target_id,
            "target": self.target,
            "created_at": self.created_at,
            "withdrawn_at": self.withdrawn_at,
        }


_ADDED_AUDIT_COLUMNS = ("actor", "model", "transform")  # columns older databases lack


@dataclass(frozen=True)
class AuditRecord:
    """A guard block (``action`` block/rewrite), a guard outage (``guard_failed``) or an admin
    action (``forget_add``, …); ``actor`` is the fingerprint of the key that made the request."""

    request_id: str
    action: str
    policy: str | None = None
    method: str | None = None
    target_id: str | None = None
    item: str | None = None
    score: float | None = None
    prompt: str | None = None
    actor: str | None = None
    model: str | None = None
    transform: str | None = None  # the view of the text a block matched in (plain, base64, …)


AUDIT_COLUMNS = ("ts", "policy", "request_id", "action", "method", "target_id", "item", "score",
                 "prompt", "actor", "model", "transform")


class Store(ABC):
    """Forget requests, retain removals and the audit log; safe to share between threads."""

    def __init__(self) -> None:
        self._origins: dict[str, tuple[str | None, str | None]] = {}
        self._origins_lock = threading.Lock()

    @property
    @abstractmethod
    def version(self) -> int:
        """The version of the forget requests and retain removals: a runtime built from a read
        at version ``v`` is stale once it differs."""

    def ready(self) -> str | None:
        """Why the store cannot serve now (None: it can)."""
        return None

    @abstractmethod
    def add_forget(self, policy: str, target: dict[str, Any]) -> ForgetRequest:
        """Record a forget request (committed on return) and return it."""

    @abstractmethod
    def withdraw_forget(self, policy: str, target_id: str) -> int:
        """Mark the active requests for ``target_id`` withdrawn; returns how many."""

    @abstractmethod
    def forget_requests(
        self, policy: str | None = None, *, active_only: bool = True
    ) -> list[ForgetRequest]:
        """Forget requests, oldest first."""

    @abstractmethod
    def remove_retain(self, policy: str, question: str) -> None:
        """Record that a retain example must leave the policy's demonstration pool."""

    @abstractmethod
    def removed_retain(self, policy: str) -> list[str]:
        """Questions removed from the policy's retain pool, oldest first."""

    @abstractmethod
    def _insert_audit(self, values: tuple[Any, ...]) -> None:
        """Append one audit row (:data:`AUDIT_COLUMNS` in order), committed on return."""

    @abstractmethod
    def audit(self, *, limit: int = 100, after_seq: int = 0) -> list[dict[str, Any]]:
        """Audit records after ``after_seq``, oldest first."""

    @abstractmethod
    def close(self) -> None: ...

    def note_origin(self, request_id: str, *, actor: str | None, model: str) -> Callable[[], None]:
        """Until the returned function is called, records of ``request_id`` appended without an
        actor and a model (the pipeline's blocks) carry ``actor`` and ``model``."""
        with self._origins_lock:
            self._origins[request_id] = (actor, model)

        def forget() -> None:
            with self._origins_lock:
                self._origins.pop(request_id, None)

        return forget

    def append_audit(self, record: AuditRecord) -> None:
        """Append one audit record (committed on return), with its request's origin (see
        :meth:`note_origin`) when it has no actor and no model."""
        with self._origins_lock:
            origin = self._origins.get(record.request_id)
        if origin is not None and record.actor is None and record.model is None:
            record = replace(record, actor=origin[0], model=origin[1])
        self._insert_audit((
            time.time(), record.policy, record.request_id, record.action, record.method,
            record.target_id, record.item, record.score, record.prompt, record.actor,
            record.model, record.transform,
        ))


class SqliteStore(Store):
    """One SQLite database file (one replica)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(audit)")}
        for column in _ADDED_AUDIT_COLUMNS:
            if column not in columns:
                self._conn.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
        self._lock = threading.Lock()
        self._version = 0

    @property
    def version(self) -> int:
        """Counts the changes made through this object (the only writer of its file)."""
        return self._version

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _write(self, sql: str, args: tuple[Any, ...], *, change: bool = True) -> sqlite3.Cursor:
        with self._lock:
            cursor = self._conn.execute(sql, args)
            self._version += change
            return cursor

    def add_forget(self, policy: str, target: dict[str, Any]) -> ForgetRequest:
        now = time.time()
        cursor = self._write(
            "INSERT INTO forget_requests(policy, target_id, target_json, created_at) "
            "VALUES (?, ?, ?, ?)",
            (policy, str(target["id"]), json.dumps(target, sort_keys=True), now),
        )
        return ForgetRequest(int(cursor.lastrowid or 0), policy, str(target["id"]), target, now, None)

    def withdraw_forget(self, policy: str, target_id: str) -> int:
        return self._write(
            "UPDATE forget_requests SET withdrawn_at = ? "
            "WHERE policy = ? AND target_id = ? AND withdrawn_at IS NULL",
            (time.time(), policy, target_id),
        ).rowcount

    def forget_requests(
        self, policy: str | None = None, *, active_only: bool = True
    ) -> list[ForgetRequest]:
        sql, args = forget_query(policy, active_only=active_only, placeholder="?")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [forget_row(r) for r in rows]

    def remove_retain(self, policy: str, question: str) -> None:
        self._write(
            "INSERT INTO retain_removals(policy, question, created_at) VALUES (?, ?, ?)",
            (policy, question, time.time()),
        )

    def removed_retain(self, policy: str) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT question FROM retain_removals WHERE policy = ? ORDER BY seq", (policy,)
            ).fetchall()
        return [r[0] for r in rows]

    def _insert_audit(self, values: tuple[Any, ...]) -> None:
        self._write(f"INSERT INTO audit({', '.join(AUDIT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})", values, change=False)

    def audit(self, *, limit: int = 100, after_seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(
                "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def forget_query(policy: str | None, *, active_only: bool, placeholder: str
                 ) -> tuple[str, list[Any]]:
    """The SELECT of forget requests (a store's parameter ``placeholder``), oldest first."""
    sql = ("SELECT seq, policy, target_id, target_json, created_at, withdrawn_at "
           "FROM forget_requests")
    clauses, args = [], []
    if policy is not None:
        clauses.append(f"policy = {placeholder}")
        args.append(policy)
    if active_only:
        clauses.append("withdrawn_at IS NULL")
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + " ORDER BY seq", args


def forget_row(row: Sequence[Any]) -> ForgetRequest:
    """A :class:`ForgetRequest` from a row of :func:`forget_query`."""
    return ForgetRequest(int(row[0]), row[1], row[2], json.loads(row[3]), float(row[4]),
                         None if row[5] is None else float(row[5]))


def open_store(config: StoreConfig, state_dir: str | Path) -> Store:
    """The store ``config`` names: SQLite in ``state_dir``, or the shared PostgreSQL."""
    if config.backend == "postgres":
        from proxy.store_postgres import PostgresStore  # psycopg only when it is used

        assert config.dsn is not None  # StoreConfig requires it
        return PostgresStore(config.dsn, state_dir=state_dir, pool_size=config.pool_size,
                             connect_timeout_s=config.connect_timeout_s)
    return SqliteStore(Path(state_dir) / "unlearn.sqlite3")
