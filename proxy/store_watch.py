"""Keeping a replica's policies in step with the shared store (PostgreSQL).

:class:`StoreWatcher` holds one connection that ``LISTEN``s for the store's change
notifications (sent on commit, naming the policy changed): each one from another replica
recompiles that policy at once. Every ``reconcile_s`` it also compares the runtime's state
version with the database's, and recompiles every policy when they differ: a notification lost
with a dropped connection is caught there. On (re)connecting it catches up before it reports
ready; while it cannot connect it keeps trying, and :meth:`StoreWatcher.not_ready` says why.
Compiled artefacts stay per replica: they are deterministic and keyed by content hash, so each
replica compiles the same policy from the same rows (and hits its own cache).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg

from proxy.runtime import RuntimeHolder
from proxy.store_postgres import CHANNEL, PostgresStore

log = logging.getLogger("unlearn_proxy.store")


class StoreWatcher:
    """A thread that applies other replicas' changes to ``holder``'s runtime."""

    def __init__(self, store: PostgresStore, holder: RuntimeHolder, *,
                 reconcile_s: float = 0.5) -> None:
        self.store = store
        self.holder = holder
        self.reconcile_s = reconcile_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._problem: str | None = "not started"
        self.applied = 0  # changes applied from other replicas (or found by reconciling)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def not_ready(self) -> str | None:
        """Why this replica may be behind the store (None: listening and caught up)."""
        if self._problem is not None:
            return self._problem
        if self.holder.current.store_version < self.store.version:
            return "catching up with the store"
        return None

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.store.dsn, autocommit=True,
                                     connect_timeout=max(1, round(self.reconcile_s * 4))) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._reconcile()  # what happened while not listening
                    self._connected, self._problem, backoff = True, None, 0.2
                    self._listen(conn)
            except (psycopg.Error, OSError) as exc:
                self._problem = f"the store is unreachable: {type(exc).__name__}"
                log.warning("store watcher: %s; retrying in %.1f s", exc, backoff)
            except Exception as exc:  # a policy that fails to compile: retried, never silent
                self._problem = f"cannot apply the store's state: {exc}"
                log.error("store watcher: %s", exc, exc_info=True)
            self._connected = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _listen(self, conn: psycopg.Connection[object]) -> None:
        while not self._stop.is_set():
            names: set[str] = set()
            for note in conn.notifies(timeout=self.reconcile_s, stop_after=1):
                names |= self._changed(note.payload)
            if names:
                for note in conn.notifies(timeout=0.0):  # the rest of a burst, together
                    names |= self._changed(note.payload)
                self.store.read_version()
                self._apply(names)
            else:
                self._reconcile()

    def _changed(self, payload: str) -> set[str]:
        """The policy a notification names, unless this replica made the change and its
        runtime already holds it."""
        try:
            note = json.loads(payload)
            policy, version, replica = str(note["policy"]), int(note["version"]), note["replica"]
        except (ValueError, KeyError, TypeError):
            return set()
        if replica == self.store.replica and self.holder.current.store_version >= version:
            return set()
        return {policy}

    def _reconcile(self) -> None:
        if self.store.read_version() != self.holder.current.store_version:
            self._apply(None)

    def _apply(self, names: set[str] | None) -> None:
        started = time.perf_counter()
        self.holder.refresh(self.store, names)
        self.applied += 1
        log.info("store watcher: applied the store's state (%s) in %.0f ms",
                 ", ".join(sorted(names)) if names else "every policy",
                 (time.perf_counter() - started) * 1000)
