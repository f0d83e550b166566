"""Client and admin authentication, and per-key rate limits."""

from __future__ import annotations

import hmac
import math
import os
import threading
import time
from collections import deque

from fastapi import Request

from proxy.errors import AuthenticationError, PermissionDeniedError, RateLimitError


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


class RateLimiter:
    """A sliding one-minute window per client key (None = anonymous)."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self._hits: dict[str | None, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str | None) -> None:
        """Count one request; raise 429 with ``retry-after`` when over the limit."""
        if self.per_minute is None:
            return
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] >= 60.0:
                hits.popleft()
            if len(hits) >= self.per_minute:
                wait = max(1, math.ceil(60.0 - (now - hits[0])))
                raise RateLimitError(
                    f"rate limit of {self.per_minute} requests per minute exceeded",
                    code="rate_limit_exceeded",
                    headers={"retry-after": str(wait)},
                )
            hits.append(now)
