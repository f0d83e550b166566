"""A throwaway PostgreSQL server on a free loopback port, for tests and benchmarks.

    with postgres_server() as pg:
        pg.dsn        # postgresql://postgres@127.0.0.1:<port>/postgres
        pg.restart()  # a fast shutdown and a start on the same port and data

It runs the PostgreSQL binaries of the machine (Debian's ``postgresql`` package, found on
``PATH`` or under ``/usr/lib/postgresql/<version>/bin``, or the directory ``UNLEARN_PG_BIN``
names) on a fresh data directory in a temporary folder, with ``trust`` authentication on
loopback only. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres``
user (Debian's package makes it), or ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from benchmarks.processes import free_port


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``; a clear error when there is none."""
    named = os.environ.get("UNLEARN_PG_BIN")
    candidates = [named] if named else []
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError("no PostgreSQL server binaries found: install Debian's 'postgresql' "
                       "package (apt-get install postgresql) or set UNLEARN_PG_BIN")


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as when this process is root (None: as this user)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and there is no 'postgres' or 'nobody' user to run "
                       "PostgreSQL as")


class PostgresServer:
    """One PostgreSQL server on a data directory of its own under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        self.user = _run_as()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> None:  # in the child, before exec
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> None:
        """Initialise the data directory (once), start the server, wait until it answers."""
        if not self.data.exists():
            self._own(self.root)
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-sync"],
                check=True, capture_output=True, preexec_fn=self._demote)
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start:\n"
                                       + self.log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (clients disconnected, everything committed kept)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer`, stopped and deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="unlearn-pg-") as tmp:
        server = PostgresServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()
