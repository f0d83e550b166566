"""A config generation made live: backends, compiled policies and the pipeline over them.

A new :class:`Runtime` is built completely before it replaces the old one, so a reload is
atomic and a broken config never replaces a working one. Backends whose config did not change
are carried over rather than loaded again.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import ValidationError

from proxy.backends import build_backend
from proxy.backends.base import Backend
from proxy.core.config import Config, ForgetRequestTarget, ForgetTargetConfig
from proxy.core.errors import ConfigError, InvalidRequestError, NotFoundError
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline, PolicyRuntime
from proxy.policy import CompiledPolicy, compile_policy
from proxy.store import ForgetRequest, Store

log = logging.getLogger("unlearn_proxy.runtime")


@dataclass
class Runtime:
    config: Config
    base_dir: Path
    backends: dict[str, Backend]
    policies: dict[str, PolicyRuntime]
    pipeline: Pipeline
    store_version: int = 0  # the store's version its policies were read at

    @property
    def model_names(self) -> list[str]:
        return sorted(self.config.models)


def stored_target(row: ForgetRequest) -> tuple[ForgetTargetConfig | None, str | None]:
    """The target of stored forget request ``row`` as the runtime enforces it, and what of the
    row it leaves out. Rows stored by older versions may carry document ``path`` entries, which
    a forget request may no longer hold: those documents are never read (the row's name,
    aliases, questions and text documents are still enforced), and the row stays in the store
    as it is; withdraw it and add the target again with text documents to use them. A row that
    is unusable even so gives ``(None, why)``."""
    target = dict(row.target)
    documents = target.get("documents")
    dropped = []
    if isinstance(documents, list):
        dropped = [i for i, d in enumerate(documents) if isinstance(d, dict) and "path" in d]
        target["documents"] = [d for i, d in enumerate(documents) if i not in dropped]
    note = (f"documents {', '.join(map(str, dropped))}: a document path (from an older version) "
            f"is not read" if dropped else None)
    try:
        return ForgetRequestTarget.model_validate(target), note
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                        for e in exc.errors())
        return None, why


def _runtime_targets(
    store: Store | None, policy: str, without: str | None = None
) -> list[ForgetTargetConfig]:
    """The stored forget requests of ``policy`` (but those for target ``without``), as
    :func:`stored_target` enforces them (what it leaves out is logged)."""
    targets: list[ForgetTargetConfig] = []
    for row in store.forget_requests(policy) if store is not None else []:
        if row.target_id == without:
            continue
        target, note = stored_target(row)
        if target is None:
            log.error("forget request %d (%s/%s) is kept in the store but left out, not "
                      "enforced: %s", row.seq, policy, row.target_id, note)
            continue
        if note is not None:
            log.error("forget request %d (%s/%s) is enforced without part of it, kept in the "
                      "store as sent: %s", row.seq, policy, row.target_id, note)
        targets.append(target)
    return targets


def build_policies(
    config: Config,
    *,
    base_dir: Path,
    store: Store | None,
    only: str | None = None,
    adding: Sequence[ForgetTargetConfig] = (),
    without: str | None = None,
) -> dict[str, PolicyRuntime]:
    """Compile every policy (or just ``only``) with its runtime forget requests (but the one
    for target ``without``), and ``adding``, merged in."""
    names = [only] if only else list(config.policies)
    return {
        name: compile_policy(
            name,
            config.policies[name],
            base_dir=base_dir,
            state_dir=Path(config.server.state_dir),
            extra_targets=[*_runtime_targets(store, name, without), *adding],
            removed_retain=store.removed_retain(name) if store else [],
        )
        for name in names
    }


@contextmanager
def _starting() -> Iterator[None]:
    """Any failure to start a configuration as a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot start the configuration: {type(exc).__name__}: {exc}") from exc


def build_runtime(
    config: Config,
    *,
    base_dir: Path,
    metrics: Metrics,
    store: Store | None,
    previous: Runtime | None = None,
) -> Runtime:
    """Build backends and policies for ``config``; raises ConfigError when anything fails."""
    backends: dict[str, Backend] = {}
    version = store.version if store is not None else 0
    with _starting():
        for name, cfg in config.models.items():
            old = previous.config.models.get(name) if previous else None
            if previous is not None and old == cfg:
                backends[name] = previous.backends[name]
            else:
                backends[name] = build_backend(name, cfg)
        policies = build_policies(config, base_dir=base_dir, store=store)
    pipeline = Pipeline(backends=backends, policies=policies, metrics=metrics, store=store)
    return Runtime(config, base_dir, backends, policies, pipeline, version)


class BackendUsers:
    """How many requests use each backend, so that one a reload replaced is closed only once
    the requests that started on it are done."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()

    def acquire(self, backend: Backend) -> Callable[[], None]:
        """Count one request on ``backend``; returns the function to call once it is done."""
        key = id(backend)
        with self._lock:
            self._counts[key] += 1

        def release() -> None:
            with self._lock:
                self._counts[key] -= 1
                if not self._counts[key]:
                    del self._counts[key]

        return release

    def in_use(self, backend: Backend) -> bool:
        with self._lock:
            return id(backend) in self._counts


class RuntimeHolder:
    """Holds the live runtime; swaps are atomic and serialised."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
        self.users = BackendUsers()
        self._lock = threading.Lock()

    def swap(self, runtime: Runtime, store: Store | None = None) -> None:
        """Make ``runtime`` live. Forget requests added or withdrawn since it read ``store``
        are compiled in first, under the lock that serialises them: a swap never drops one.
        Raises ConfigError (and swaps nothing) when that compile fails."""
        with self._lock:
            if store is not None and store.version != runtime.store_version:
                version = store.version
                with _starting():
                    policies = build_policies(runtime.config, base_dir=runtime.base_dir, store=store)
                runtime = _with_policies(runtime, policies, store, store_version=version)
            self.current = runtime

    def refresh(self, store: Store, names: Collection[str] | None = None) -> None:
        """Recompile policies ``names`` (None: every policy) from ``store`` as it is now, and
        swap them in: what another replica changed in a shared store. Raises ConfigError (and
        swaps nothing) when that compile fails."""
        with self._lock:
            current = self.current
            version = store.version
            wanted = [n for n in (names or current.config.policies) if n in current.config.policies]
            fresh: dict[str, PolicyRuntime] = {}
            with _starting():
                for name in wanted:
                    fresh.update(build_policies(current.config, base_dir=current.base_dir,
                                                store=store, only=name))
            self.current = _with_policies(current, {**current.policies, **fresh}, store,
                                          store_version=version if names is None
                                          else max(version, current.store_version))

    def withdraw_forget(self, name: str, target_id: str, store: Store) -> None:
        """Compile policy ``name`` without the forget request for ``target_id``, then withdraw
        it in the store and swap the policy in: a compile failure raises and changes nothing.
        Raises NotFoundError when the policy has no such active request."""
        with self._lock:
            if not any(r.target_id == target_id for r in store.forget_requests(name)):
                raise NotFoundError(f"no active forget request {target_id!r} in policy {name!r}")
            current = self.current
            fresh = build_policies(
                current.config, base_dir=current.base_dir, store=store, only=name, without=target_id)
            before = store.version
            store.withdraw_forget(name, target_id)
            self._install(fresh, store, before)

    def remove_retain(self, name: str, question: str, store: Store) -> list[bool]:
        """Record the removal of retain example ``question`` from policy ``name``, then delete it
        from the live ICUL pools (exact ERASE deletion; whether each recomputed), under the lock
        of forget requests and swaps: no policy compiled from the store at the same time brings
        it back. Raises NotFoundError when no pool of the live policy holds it."""
        with self._lock:
            policy = self.current.policies[name]
            if not isinstance(policy, CompiledPolicy) or not policy.has_retain(question):
                raise NotFoundError("that question is not in the retain pool", param="question")
            store.remove_retain(name, question)
            return policy.remove_retain(question)

    def add_forget(self, name: str, target: ForgetTargetConfig, store: Store) -> ForgetRequest:
        """Compile policy ``name`` with ``target`` added, then store the request and swap the
        policy in: a target that fails to compile raises and is neither stored nor live, and
        of concurrent requests for one id only the first is stored (the others get a 400). A
        request identical to an active one is that one (a retry is safe)."""
        with self._lock:
            current = self.current
            policy = current.config.policies.get(name)
            if policy is None:
                raise NotFoundError(f"unknown policy {name!r}", param="policy")
            stored_rows = store.forget_requests(name)
            for row in stored_rows:  # the same request again (a retry): acknowledged again
                if row.target_id == target.id and row.target == target.model_dump():
                    return row
            taken = {t.id for t in policy.forget} | {r.target_id for r in stored_rows}
            if target.id in taken:
                raise InvalidRequestError(
                    f"forget target {target.id!r} already exists in policy {name!r}",
                    param="target.id",
                )
            fresh = build_policies(
                current.config, base_dir=current.base_dir, store=store, only=name, adding=[target])
            before = store.version
            stored = store.add_forget(name, target.model_dump())
            self._install(fresh, store, before)
        return stored

    def _install(self, fresh: dict[str, PolicyRuntime], store: Store | None,
                 before: int | None = None) -> None:
        """Swap ``fresh`` in after one change to ``store``; when the runtime was current at
        ``before`` (the store's version before that change), it is current after it too."""
        changes: dict[str, int] = {}
        if store is not None and before is not None and self.current.store_version == before \
                and store.version == before + 1:
            changes["store_version"] = store.version
        self.current = _with_policies(self.current, {**self.current.policies, **fresh}, store,
                                      **changes)


def _with_policies(
    runtime: Runtime, policies: dict[str, PolicyRuntime], store: Store | None, **changes: int
) -> Runtime:
    """``runtime`` serving ``policies`` (its backends and metrics kept)."""
    pipeline = Pipeline(
        backends=runtime.backends, policies=policies, metrics=runtime.pipeline.metrics, store=store)
    return replace(runtime, policies=policies, pipeline=pipeline, **changes)
