"""The error hierarchy maps to the documented OpenAI envelopes 
(docs/ARCHITECTURE.md, "Errors and status codes")."""

from __future__ import annotations

import pytest

from proxy.core import errors

# (class, status, type): the table in proxy/core/errors.py's docstring and in
# docs/ARCHITECTURE.md, "Errors and status codes".
DOCUMENTED = [
    (errors.InvalidRequestError, 400, "invalid_request_error"),
    (errors.PolicyBlockedError, 400, "invalid_request_error"),
    (errors.UnsupportedError, 400, "invalid_request_error"),
    (errors.AuthenticationError, 401, "authentication_error"),
    (errors.PermissionDeniedError, 403, "permission_error"),
    (errors.NotFoundError, 404, "not_found_error"),
    (errors.RequestTimeoutError, 408, "invalid_request_error"),
    (errors.PayloadTooLargeError, 413, "invalid_request_error"),
    (errors.RateLimitError, 429, "rate_limit_error"),
    (errors.UpstreamError, 502, "server_error"),
    (errors.UpstreamTimeoutError, 504, "server_error"),
    (errors.GuardFailedError, 503, "server_error"),
    (errors.ProxyError, 500, "server_error"),
]


@pytest.mark.parametrize(("cls", "status", "error_type"), DOCUMENTED,
                         ids=[c.__name__ for c, _, _ in DOCUMENTED])
def test_status_and_type(cls: type[errors.ProxyError], status: int, error_type: str) -> None:
    error = cls("boom")
    assert (error.status_code, error.error_type) == (status, error_type)
    assert error.envelope()["error"]["type"] == error_type


def test_envelope_has_exactly_the_openai_fields() -> None:
    error = errors.NotFoundError("no such model", param="model", code="model_not_found",
                                 headers={"x-a": "1"})
    assert error.envelope() == {"error": {"message": "no such model", "type": "not_found_error",
                                          "param": "model", "code": "model_not_found"}}
    assert (str(error), error.headers) == ("no such model", {"x-a": "1"})
    assert errors.ProxyError("m").envelope() == {
        "error": {"message": "m", "type": "server_error", "param": None, "code": None}}


def test_a_policy_block_is_a_400_content_filter_never_retried() -> None:
    blocked = errors.PolicyBlockedError("blocked", headers={"x-request-id": "r1"})
    assert isinstance(blocked, errors.InvalidRequestError)
    assert blocked.envelope()["error"] == {"message": "blocked", "type": "invalid_request_error",
                                           "param": None, "code": "content_filter"}
    assert blocked.headers == {"x-should-retry": "false", "x-request-id": "r1"}
    assert errors.PolicyBlockedError("b").headers == {"x-should-retry": "false"}


def test_headers_are_copied_not_shared() -> None:
    given = {"retry-after": "3"}
    error = errors.RateLimitError("slow down", headers=given)
    error.headers["x"] = "y"
    assert given == {"retry-after": "3"}
    assert errors.ProxyError("m").headers == {}
