"""``proxy.store_postgres.PostgresStore`` against a real PostgreSQL server: migrations once,
changes versioned and announced on commit, an append-only audit log, and audit records kept
through an outage."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from benchmarks.postgres_server import PostgresServer, postgres_server
from proxy.core.errors import InvalidRequestError, StoreUnavailableError
from proxy.store import AuditRecord
from proxy.store_postgres import CHANNEL, MIGRATIONS, PostgresStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture()
def store(pg: PostgresServer, tmp_path: Path) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg.dsn, state_dir=tmp_path, connect_timeout_s=2)
    yield opened
    opened.close()


def test_replicas_starting_together_migrate_once(pg: PostgresServer, tmp_path: Path) -> None:
    stores = [PostgresStore(pg.dsn, state_dir=tmp_path) for _ in range(3)]
    with psycopg.connect(pg.dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, len(MIGRATIONS) + 1)]
    for opened in stores:
        opened.close()


def test_each_change_is_versioned_and_announced_on_commit(
    pg: PostgresServer, store: PostgresStore
) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        before = store.read_version()
        store.add_forget("p", {"id": "v1", "name": "Vera One"})
        store.remove_retain("p", "What is the capital of France?")
        assert store.withdraw_forget("p", "v1") == 1
        assert store.withdraw_forget("p", "v1") == 0  # nothing to withdraw: no change
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    assert [n["version"] for n in notes] == [before + 1, before + 2, before + 3]
    assert {n["policy"] for n in notes} == {"p"} and {n["replica"] for n in notes} == {
        store.replica}
    assert store.version == store.read_version() == before + 3


def test_a_retry_is_acknowledged_again_and_a_different_target_is_refused(
    store: PostgresStore, pg: PostgresServer, tmp_path: Path
) -> None:
    other = PostgresStore(pg.dsn, state_dir=tmp_path)  # another replica
    first = store.add_forget("p", {"id": "dup", "name": "Dana Up"})
    assert other.add_forget("p", {"id": "dup", "name": "Dana Up"}) == first
    with pytest.raises(InvalidRequestError, match="already exists"):
        other.add_forget("p", {"id": "dup", "name": "Someone Else"})
    other.close()


def test_the_audit_log_is_append_only(pg: PostgresServer, store: PostgresStore) -> None:
    store.append_audit(AuditRecord(request_id="r-append", action="block"))
    with psycopg.connect(pg.dsn) as conn:
        for sql in ("UPDATE audit SET action = 'allow'", "DELETE FROM audit"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
            conn.rollback()


def test_an_outage_is_a_503_for_changes_and_loses_no_audit_record(
    pg: PostgresServer, store: PostgresStore, tmp_path: Path
) -> None:
    pg.stop()
    try:
        with pytest.raises(StoreUnavailableError):
            store.add_forget("p", {"id": "down", "name": "Dow N"})
        assert store.ready() is not None
        for i in range(3):
            store.append_audit(AuditRecord(request_id=f"r-down-{i}", action="block"))
        assert len((tmp_path / "audit-spool.jsonl").read_text().splitlines()) == 3
    finally:
        pg.start()
    deadline = time.monotonic() + 30  # the pool reconnects (with backoff) on its own
    while store.ready() is not None:
        assert time.monotonic() < deadline, "the store did not recover"
    store.append_audit(AuditRecord(request_id="r-up", action="block"))
    ids = [r["request_id"] for r in store.audit(limit=1000)]
    assert ids[-4:] == ["r-down-0", "r-down-1", "r-down-2", "r-up"]  # in order, once each
    assert not (tmp_path / "audit-spool.jsonl").exists()
    assert "down" not in {r.target_id for r in store.forget_requests("p")}


def test_shared_rate_windows_count_every_replica(
    store: PostgresStore, pg: PostgresServer, tmp_path: Path
) -> None:
    other = PostgresStore(pg.dsn, state_dir=tmp_path)
    waits = [(store if i % 2 else other).rate_check("addr:9.9.9.9", 5) for i in range(8)]
    assert waits[:5] == [None] * 5 and all(w is not None and 1 <= w <= 60 for w in waits[5:])
    other.close()


def test_a_spool_left_by_a_stopped_replica_is_written_when_it_starts_again(
    pg: PostgresServer, tmp_path: Path
) -> None:
    first = PostgresStore(pg.dsn, state_dir=tmp_path, connect_timeout_s=2)
    pg.stop()
    try:
        first.append_audit(AuditRecord(request_id="r-left-behind", action="block"))
        first.close()
    finally:
        pg.start()
    again = PostgresStore(pg.dsn, state_dir=tmp_path)  # the replica restarted
    assert "r-left-behind" in [r["request_id"] for r in again.audit(limit=1000)]
    assert not (tmp_path / "audit-spool.jsonl").exists()
    again.close()
