"""Errors of the proxy and their OpenAI error envelope.

    ProxyError                    -> {"error": {"message", "type", "param", "code"}}
    ├── InvalidRequestError       400 invalid_request_error
    │   ├── PolicyBlockedError    400 invalid_request_error, code "content_filter"
    │   └── UnsupportedError      400 invalid_request_error (a backend cannot honour a parameter)
    ├── AuthenticationError       401 authentication_error
    ├── PermissionDeniedError     403 permission_error
    ├── NotFoundError             404 not_found_error
    ├── RequestTimeoutError       408 invalid_request_error (the body arrived too slowly)
    ├── PayloadTooLargeError      413 invalid_request_error
    ├── RateLimitError            429 rate_limit_error (with retry-after)
    ├── UpstreamError             502 server_error
    ├── UpstreamTimeoutError      504 server_error
    ├── GuardFailedError          503 server_error (a guard failed under fail_mode: closed)
    └── StoreUnavailableError     503 server_error (the shared store is down; nothing stored)
    ConfigError                   a bad config file (not an HTTP error)
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration file (or policy) that cannot be used; the message names the field."""


class ProxyError(Exception):
    """An error the client sees as an OpenAI error envelope."""

    status_code = 500
    error_type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ProxyError):
    status_code = 400
    error_type = "invalid_request_error"


class PolicyBlockedError(InvalidRequestError):
    """A request a policy blocks with ``on_block: error``; never retried by the SDK."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        merged = {"x-should-retry": "false", **(headers or {})}
        super().__init__(message, code="content_filter", headers=merged)


class UnsupportedError(InvalidRequestError):
    """A parameter or capability the selected backend cannot honour."""


class AuthenticationError(ProxyError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(ProxyError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(ProxyError):
    status_code = 404
    error_type = "not_found_error"


class RequestTimeoutError(ProxyError):
    status_code = 408
    error_type = "invalid_request_error"


class PayloadTooLargeError(ProxyError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimitError(ProxyError):
    status_code = 429
    error_type = "rate_limit_error"


class UpstreamError(ProxyError):
    status_code = 502
    error_type = "server_error"


class UpstreamTimeoutError(ProxyError):
    status_code = 504
    error_type = "server_error"


class GuardFailedError(ProxyError):
    status_code = 503
    error_type = "server_error"


class StoreUnavailableError(ProxyError):
    """The shared store (PostgreSQL) cannot be reached: nothing was stored; retry."""

    status_code = 503
    error_type = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "true"})
