"""A deadline for request headers, the one slow-client limit uvicorn lacks.

uvicorn closes an idle keep-alive connection only after a response, and stops that timer at the
next request's first byte; a connection that never sends a request, or trickles its headers a
byte at a time, stays open for ever (bodies are bounded by ``server.body_timeout_s`` in
:mod:`proxy.request_body`). :func:`header_timeout_protocol` is uvicorn's HTTP protocol with a
deadline: a request's headers must be complete within ``timeout_s()`` of the connection opening
or of the request's first byte, else the server answers 408 (when part of a request arrived)
and closes the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from proxy.core.errors import RequestTimeoutError


def _timeout_response(timeout_s: float) -> bytes:
    error = RequestTimeoutError(f"the request headers did not arrive within {timeout_s:g} s",
                                code="request_timeout")
    body = json.dumps(error.envelope()).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def header_timeout_protocol(timeout_s: Callable[[], float]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools, else h11) with a header deadline of ``timeout_s()``
    seconds, read when each deadline starts (so a reloaded setting applies to new ones)."""

    class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
        _deadline: asyncio.TimerHandle | None = None
        _partial = False  # part of a request arrived since the deadline started

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a request's headers are complete
                self._stop()
            elif self.cycle is None or self.cycle.response_complete:  # between requests
                self._partial = True
                if self._deadline is None:
                    self._start()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop()
            super().connection_lost(exc)

        def _start(self) -> None:
            if not self.transport.is_closing():
                limit = timeout_s()
                self._deadline = self.loop.call_later(limit, self._expired, limit)

        def _stop(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._partial = False

        def _expired(self, limit: float) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                if self._partial:
                    self.transport.write(_timeout_response(limit))
                self.transport.close()

    return HeaderTimeoutProtocol
