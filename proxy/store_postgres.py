"""The PostgreSQL store: one database shared by every replica (psycopg 3 and psycopg_pool).

Each change to forget requests or retain removals is one transaction that also increments the
database's state version and sends ``NOTIFY unlearn_state`` with the policy it changed; the
notification goes out on commit only, so a replica never hears of a change that was not
stored (:class:`proxy.store_watch.StoreWatcher` listens and recompiles). An active target id is
unique per policy in the database itself, so two replicas cannot both accept one. The schema
is versioned (``schema_migrations``): each migration runs once, in order, under an advisory
lock, so replicas starting together apply it once. Rate-limit windows live here too
(:meth:`PostgresStore.rate_check`), on the database's clock.

An unreachable database is a :class:`~proxy.core.errors.StoreUnavailableError` (503, retried)
for forget requests: nothing is acknowledged that was not stored. Audit records are never
lost to an outage: one that cannot be written goes to a spool file in ``state_dir``
(appended and flushed before the call returns) and is written when the database is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from proxy.core.errors import ConfigError, InvalidRequestError, StoreUnavailableError
from proxy.core.redaction import register_secret
from proxy.store import AUDIT_COLUMNS, ForgetRequest, Store, forget_query, forget_row

log = logging.getLogger("unlearn_proxy.store")

CHANNEL = "unlearn_state"
_MIGRATION_LOCK = 7_201_110  # the advisory lock id under which migrations run
WINDOW_S = 60.0

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE forget_requests (
        seq BIGSERIAL PRIMARY KEY,
        policy TEXT NOT NULL,
        target_id TEXT NOT NULL,
        target_json TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        withdrawn_at DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX forget_active_target ON forget_requests (policy, target_id)
        WHERE withdrawn_at IS NULL;
    CREATE TABLE retain_removals (
        seq BIGSERIAL PRIMARY KEY,
        policy TEXT NOT NULL,
        question TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE audit (
        seq BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        policy TEXT,
        request_id TEXT NOT NULL,
        action TEXT NOT NULL,
        method TEXT,
        target_id TEXT,
        item TEXT,
        score DOUBLE PRECISION,
        prompt TEXT,
        actor TEXT,
        model TEXT
    );
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TABLE state_version (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        version BIGINT NOT NULL
    );
    INSERT INTO state_version (version) VALUES (0);
    CREATE TABLE rate_hits (identity TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
    CREATE INDEX rate_hits_window ON rate_hits (identity, ts);
    """,
    "ALTER TABLE audit ADD COLUMN transform TEXT;",
)

_DOWN = (psycopg.OperationalError, PoolTimeout)  # the database cannot be reached


class PostgresStore(Store):
    """Forget requests, retain removals, the audit log and rate windows in PostgreSQL."""

    def __init__(self, dsn: str, *, state_dir: str | Path, pool_size: int = 4,
                 connect_timeout_s: float = 5.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.replica = uuid.uuid4().hex[:12]  # names this store's changes in notifications
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"server.store.dsn: not a PostgreSQL connection string ({exc})") \
                from None
        if password:
            register_secret(str(password))
        self._timeout = connect_timeout_s
        self._pool = ConnectionPool(  # each connection checked as it is taken: after a
            # database restart a pooled one is dead, and a write must not fail on it
            dsn, min_size=1, max_size=pool_size, open=False, timeout=connect_timeout_s,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout_s))},
            name="unlearn-store")
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            self._migrate()
        except _DOWN as exc:
            self._pool.close()
            raise ConfigError(f"server.store: PostgreSQL is not reachable: {exc}") from None
        self._version_lock = threading.Lock()
        self._version = 0
        self.read_version()
        self._spool = Path(state_dir) / "audit-spool.jsonl"
        self._spool_lock = threading.Lock()
        self._spool_count = (len(self._spool.read_text(encoding="utf-8").splitlines())
                             if self._spool.exists() else 0)  # a previous run's, if it died
        self._flush_spool()

    def __repr__(self) -> str:
        return "PostgresStore()"  # never the DSN: it may hold a password

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except _DOWN as exc:
            raise StoreUnavailableError(f"the store (PostgreSQL) is unavailable: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    conn.execute(sql)  # type: ignore[arg-type]  # a fixed string
                    conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                                 (version, time.time()))
                    log.info("store: applied schema migration %d", version)

    def ready(self) -> str | None:
        try:
            with self._connection() as conn:
                conn.execute("SELECT 1")
        except StoreUnavailableError as exc:
            return exc.message
        return None

    # ------------------------------------------------------------------ state version

    @property
    def version(self) -> int:
        """The database's state version, as last read or written here."""
        return self._version

    def read_version(self) -> int:
        """The database's state version now (and remember it)."""
        with self._connection() as conn:
            row = conn.execute("SELECT version FROM state_version").fetchone()
        return self._seen(int(row[0]) if row else 0)

    def _seen(self, version: int) -> int:
        with self._version_lock:
            self._version = max(self._version, version)
        return version

    def _changed(self, conn: psycopg.Connection[Any], policy: str) -> int:
        """In a change's transaction: the next state version, announced on commit."""
        row = conn.execute("UPDATE state_version SET version = version + 1 RETURNING version"
                           ).fetchone()
        version = int(row[0]) if row else 0
        conn.execute("SELECT pg_notify(%s, %s)",
                     (CHANNEL, json.dumps({"policy": policy, "version": version,
                                           "replica": self.replica})))
        return version

    # ------------------------------------------------------------------ forget requests

    def add_forget(self, policy: str, target: dict[str, Any]) -> ForgetRequest:
        now = time.time()
        try:
            with self._transaction() as conn:
                row = conn.execute(
                    "INSERT INTO forget_requests (policy, target_id, target_json, created_at) "
                    "VALUES (%s, %s, %s, %s) RETURNING seq",
                    (policy, str(target["id"]), json.dumps(target, sort_keys=True), now),
                ).fetchone()
                version = self._changed(conn, policy)
        except psycopg.errors.UniqueViolation:  # another replica took the id first
            for existing in self.forget_requests(policy):
                if existing.target_id == str(target["id"]) and existing.target == target:
                    return existing  # the same request: a retry, acknowledged again
            raise InvalidRequestError(
                f"forget target {target['id']!r} already exists in policy {policy!r}",
                param="target.id") from None
        self._seen(version)
        return ForgetRequest(int(row[0]) if row else 0, policy, str(target["id"]), target, now,
                             None)

    def withdraw_forget(self, policy: str, target_id: str) -> int:
        with self._transaction() as conn:
            count = conn.execute(
                "UPDATE forget_requests SET withdrawn_at = %s "
                "WHERE policy = %s AND target_id = %s AND withdrawn_at IS NULL",
                (time.time(), policy, target_id)).rowcount
            version = self._changed(conn, policy) if count else None
        if version is not None:
            self._seen(version)
        return count

    def forget_requests(
        self, policy: str | None = None, *, active_only: bool = True
    ) -> list[ForgetRequest]:
        sql, args = forget_query(policy, active_only=active_only, placeholder="%s")
        with self._connection() as conn:
            rows = conn.execute(sql, args).fetchall()  # type: ignore[call-overload]
        return [forget_row(r) for r in rows]

    def remove_retain(self, policy: str, question: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO retain_removals (policy, question, created_at) "
                         "VALUES (%s, %s, %s)", (policy, question, time.time()))
            version = self._changed(conn, policy)
        self._seen(version)

    def removed_retain(self, policy: str) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute("SELECT question FROM retain_removals WHERE policy = %s "
                                "ORDER BY seq", (policy,)).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ audit

    _INSERT_AUDIT = (f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) "
                     f"VALUES ({', '.join(['%s'] * len(AUDIT_COLUMNS))})")

    def _insert_audit(self, values: tuple[Any, ...]) -> None:
        """Write the spooled records, then this one, in one transaction (the log keeps their
        order); spool this one instead while the database is down."""
        with self._spool_lock:
            rows = [*self._spooled(), values]
            try:
                self._write_audit(rows)
            except StoreUnavailableError as exc:
                with self._spool.open("a", encoding="utf-8") as spool:
                    spool.write(json.dumps(values) + "\n")
                    spool.flush()
                    os.fsync(spool.fileno())
                self._spool_count += 1
                log.warning("audit record spooled to %s until the store is back: %s",
                            self._spool, exc.message)
                return
            if len(rows) > 1:
                self._spool.unlink()
                self._spool_count = 0
                log.info("store: %d spooled audit records written", len(rows) - 1)

    def _write_audit(self, rows: list[tuple[Any, ...]]) -> None:
        """Append audit rows in one transaction, in order."""
        with self._transaction() as conn:
            for row in rows:
                conn.execute(self._INSERT_AUDIT, row)  # type: ignore[arg-type]

    def _spooled(self) -> list[tuple[Any, ...]]:
        """The spooled audit records, oldest first (none without reading a file, usually)."""
        if not self._spool_count:
            return []
        return [tuple(json.loads(line)) for line in
                self._spool.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _flush_spool(self) -> None:
        """Write the spooled audit records, if any and if the database answers."""
        with self._spool_lock:
            rows = self._spooled()
            if not rows:
                return
            try:
                self._write_audit(rows)
            except StoreUnavailableError:
                return  # still down: kept for the next write
            self._spool.unlink()
            self._spool_count = 0
            log.info("store: %d spooled audit records written", len(rows))

    def audit(self, *, limit: int = 100, after_seq: int = 0) -> list[dict[str, Any]]:
        self._flush_spool()
        with self._connection() as conn:
            cursor = conn.execute(
                "SELECT * FROM audit WHERE seq > %s ORDER BY seq LIMIT %s", (after_seq, limit))
            names = [d.name for d in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ rate limits

    def rate_check(self, identity: str, per_minute: int) -> int | None:
        """Count one request of ``identity`` in its one-minute window, shared by every
        replica; the seconds to wait instead when the window is full (nothing counted)."""
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (identity,))
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            now = float(row[0]) if row else time.time()
            conn.execute("DELETE FROM rate_hits WHERE identity = %s AND ts <= %s",
                         (identity, now - WINDOW_S))
            count, oldest = conn.execute(
                "SELECT count(*), min(ts) FROM rate_hits WHERE identity = %s", (identity,)
            ).fetchone() or (0, None)
            if count >= per_minute:
                return max(1, int(WINDOW_S - (now - float(oldest)) + 0.999))
            conn.execute("INSERT INTO rate_hits VALUES (%s, %s)", (identity, now))
        return None

    def close(self) -> None:
        self._pool.close()
