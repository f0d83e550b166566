"""Client and admin authentication, and per-key rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from fastapi import Request

from proxy.core.errors import (
    AuthenticationError, PermissionDeniedError, RateLimitError, StoreUnavailableError,
)
from proxy.core.redaction import register_secret

log = logging.getLogger("unlearn_proxy.auth")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(token: str, keys: list[str]) -> bool:
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def client_key(request: Request, *, admin: bool) -> str | None:
    """The presented key after checking it; raises 401 (or 403 when admin is disabled)."""
    config = request.app.state.holder.current.config
    token = _bearer(request)
    if admin:
        admin_key = os.environ.get(config.server.admin_key_env)
        if not admin_key:
            raise PermissionDeniedError(
                f"the admin API is disabled: set {config.server.admin_key_env} to enable it"
            )
        register_secret(admin_key)
        if token is None or not _matches(token, [admin_key]):
            raise AuthenticationError("a valid admin key is required", code="invalid_api_key")
        return token
    keys = list(config.server.api_keys)
    if not keys:
        return token
    if token is None:
        raise AuthenticationError(
            "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
        )
    if not _matches(token, keys):
        raise AuthenticationError("incorrect API key provided", code="invalid_api_key")
    return token


def key_fingerprint(key: str | None) -> str | None:
    """A short, stable, non-reversible name of ``key`` for the audit log (never the key)."""
    return None if key is None else "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def require_reader(request: Request) -> None:
    """For a protected operational endpoint: a client key from ``api_keys`` or the admin key
    (on an open server only the admin key counts); raises 401 otherwise."""
    config = request.app.state.holder.current.config
    keys = list(config.server.api_keys)
    admin_key = os.environ.get(config.server.admin_key_env)
    if admin_key:
        register_secret(admin_key)
        keys.append(admin_key)
    token = _bearer(request)
    if token is None or not _matches(token, keys):
        raise AuthenticationError(
            "this endpoint needs a client key or the admin key", code="invalid_api_key")


def rate_limit_identity(request: Request, key: str | None) -> str:
    """Whom a rate limit counts: the verified client key, or on an open server (no
    ``api_keys``, so any bearer token is accepted unchecked) the client's address."""
    if key is not None and request.app.state.holder.current.config.server.api_keys:
        return f"key:{key}"
    return f"addr:{request.client.host if request.client else 'unknown'}"


WINDOW_S = 60.0


async def check_rate(request: Request, key: str | None, per_minute: int | None) -> None:
    """Count one request of the client in the app's rate limiter (429 when over the limit)."""
    if per_minute is None:
        return
    limiter = request.app.state.rate_limiter
    identity = rate_limit_identity(request, key)
    if getattr(limiter, "blocking", False):
        await asyncio.to_thread(limiter.check, identity, per_minute)
    else:
        limiter.check(identity, per_minute)


class RateLimiter:
    """A sliding one-minute window per client identity (see :func:`rate_limit_identity`).

    The limit is passed with each check, so a reloaded ``rate_limit_per_minute`` applies at
    once (to the windows already counted). Windows idle for a whole minute are dropped (at
    most once a minute, in one sweep), so memory stays bounded by the clients seen in the last
    two minutes.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._swept = clock()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The identities with a live window."""
        return len(self._hits)

    def check(self, identity: str, per_minute: int | None) -> None:
        """Count one request; raise 429 with ``retry-after`` when over ``per_minute`` (None:
        no limit, nothing counted)."""
        if per_minute is None:
            return
        now = self._clock()
        with self._lock:
            if now - self._swept >= WINDOW_S:
                self._sweep(now)
            hits = self._hits.setdefault(identity, deque())
            while hits and now - hits[0] >= WINDOW_S:
                hits.popleft()
            if len(hits) >= per_minute:
                raise rate_limited(per_minute, max(1, math.ceil(WINDOW_S - (now - hits[0]))))
            hits.append(now)

    def _sweep(self, now: float) -> None:
        self._hits = {k: h for k, h in self._hits.items() if h and now - h[-1] < WINDOW_S}
        self._swept = now


def rate_limited(per_minute: int, wait_s: int) -> RateLimitError:
    """The 429 of a full window, with ``retry-after``."""
    return RateLimitError(f"rate limit of {per_minute} requests per minute exceeded",
                          code="rate_limit_exceeded", headers={"retry-after": str(wait_s)})


class SharedWindow(Protocol):
    """A rate window every replica shares (:meth:`proxy.store_postgres.PostgresStore.rate_check`)."""

    def rate_check(self, identity: str, per_minute: int) -> int | None: ...


class SharedRateLimiter:
    """:class:`RateLimiter`'s windows kept in a store every replica shares, so N replicas let
    the limit through, not N times it. While the store is unreachable, each replica counts on
    its own (logged once per outage), and goes back to the shared windows when it returns."""

    blocking = True  # each check is a database round trip: run it off the event loop

    def __init__(self, shared: SharedWindow) -> None:
        self._shared = shared
        self._local = RateLimiter()
        self._degraded = False

    def check(self, identity: str, per_minute: int | None) -> None:
        if per_minute is None:
            return
        try:
            wait = self._shared.rate_check(identity, per_minute)
        except StoreUnavailableError as exc:
            if not self._degraded:
                log.warning("rate limits are per replica until the store is back: %s",
                            exc.message)
            self._degraded = True
            self._local.check(identity, per_minute)
            return
        self._degraded = False
        if wait is not None:
            raise rate_limited(per_minute, wait)
