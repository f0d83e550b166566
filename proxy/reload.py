"""Hot reload: on SIGHUP or when the config file changes, build the new config and swap it in.

A config that fails to load or to start is rejected and logged; the old one keeps serving.
Server settings apply at once (keys, limits, the rate limit), except :data:`RESTART_SETTINGS`:
a change to one of those is logged and counted as needing a restart, and the running value kept.
Backends the new config does not reuse are closed once no request uses them any more.
The watcher watches the file's directory, not the file: editors and Kubernetes ConfigMaps save
by writing a new file and renaming it over the old one (``os.replace``, a ``..data`` symlink
swap), which ends a watch on the old file. Any event in the directory re-reads the file, and
a reload runs when its bytes differ from those last tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from pathlib import Path

from proxy.backends.base import Backend
from proxy.core.config import Config, load_config
from proxy.core.errors import ConfigError
from proxy.metrics import Metrics
from proxy.runtime import RuntimeHolder, build_runtime
from proxy.store import Store

log = logging.getLogger("unlearn_proxy.reload")
RESTART_SETTINGS = ("host", "port", "state_dir")
RETIRE_GRACE_S = 600.0  # a replaced backend still in use after this long is closed anyway
SETTLE_S = 0.05  # a changed file must read the same twice this far apart before it is loaded


def _keep_restart_settings(new: Config, running: Config) -> tuple[Config, list[str]]:
    """``new`` with the :data:`RESTART_SETTINGS` it changes kept at their running values, and
    the names of those settings."""
    old, fresh = running.server, new.server
    changed = [name for name in RESTART_SETTINGS if getattr(fresh, name) != getattr(old, name)]
    if not changed:
        return new, []
    server = fresh.model_copy(update={name: getattr(old, name) for name in changed})
    return new.model_copy(update={"server": server}), changed


class ConfigReloader:
    """Reloads ``path`` into ``holder``; at most one reload runs at a time."""

    def __init__(self, path: Path, holder: RuntimeHolder, *, metrics: Metrics, store: Store):
        self.path = path
        self.holder = holder
        self.metrics = metrics
        self.store = store
        self._lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._retiring: dict[asyncio.Task[None], list[Backend]] = {}
        self._tried = self._digest()

    async def reload(self) -> bool:
        """Try to load and start the file; True when the new config now serves."""
        async with self._lock:
            self._tried = self._digest()
            try:
                config, pending = _keep_restart_settings(load_config(self.path),
                                                         self.holder.current.config)
                runtime = await asyncio.to_thread(
                    build_runtime,
                    config,
                    base_dir=self.path.parent,
                    metrics=self.metrics,
                    store=self.store,
                    previous=self.holder.current,
                )
                replaced = list(self.holder.current.backends.values())
                await asyncio.to_thread(self.holder.swap, runtime, self.store)
            except ConfigError as exc:
                log.error("config reload rejected, keeping the previous config:\n%s", exc)
                self.metrics.reloads.labels("rejected").inc()
                return False
            self.metrics.reloads.labels("applied").inc()
            log.info("config reloaded from %s", self.path)
            kept = set(map(id, runtime.backends.values()))
            self._retire(list({id(b): b for b in replaced if id(b) not in kept}.values()))
            for name in pending:
                self.metrics.restart_needed.labels(name).inc()
                log.warning("server.%s changed in %s: needs a restart (still %r)", name, self.path,
                            getattr(config.server, name))
            return True

    def _retire(self, backends: list[Backend]) -> None:
        """Close ``backends`` once no request uses them (at most :data:`RETIRE_GRACE_S` on)."""
        if not backends:
            return
        task = asyncio.get_running_loop().create_task(self._close_when_idle(backends))
        self._retiring[task] = backends
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def _close_when_idle(self, backends: list[Backend]) -> None:
        deadline = time.monotonic() + RETIRE_GRACE_S
        while any(map(self.holder.users.in_use, backends)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await _close(backends)

    def start(self, *, watch: bool) -> None:
        """Install the SIGHUP handler (main thread only) and, if asked, the file watcher."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        if watch:
            self._watch_task = loop.create_task(self._watch())

    def _digest(self) -> str | None:
        """The file's content hash (None while it is missing or empty: mid-rename, or an
        in-place save that has truncated the file and not written it yet)."""
        try:
            content = self.path.read_bytes()
        except OSError:
            return None
        return hashlib.sha256(content).hexdigest() if content else None

    async def _settled_digest(self) -> str | None:
        """The digest once two reads :data:`SETTLE_S` apart agree (a save still being written
        gives None: its last write brings another event)."""
        digest = self._digest()
        await asyncio.sleep(SETTLE_S)
        return digest if digest == self._digest() else None

    async def _watch(self) -> None:
        from watchfiles import awatch

        directory = self.path.parent
        async for _changes in awatch(directory, debounce=300, rust_timeout=1000, recursive=False):
            digest = await self._settled_digest()
            if digest is not None and digest != self._tried:
                log.info("config file %s changed", self.path)
                await self.reload()

    async def stop(self) -> None:
        """Stop watching, and close the replaced backends not closed yet."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for task, backends in list(self._retiring.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await _close(backends)


async def _close(backends: list[Backend]) -> None:
    for backend in backends:
        try:
            await backend.aclose()
        except Exception:  # one backend failing to close must not keep the others open
            log.exception("closing the replaced backend %r failed", backend)
