"""A lean HTTP/1.1 load generator: keep-alive connections, responses parsed by httptools.

A load benchmark on two cores measures its own client as much as the server when the client is
heavy: an ``httpx.AsyncClient`` spends about as much CPU per request as the proxy under test.
This client writes a prepared request and lets ``httptools`` (the C parser uvicorn uses) read
the answer, streamed (chunked) or not, so nearly all of the machine is left to the servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

__all__ = ["LoadConnection", "Response", "drive_load"]


@dataclass
class Response:
    """Status and whole body (a streamed body's chunks joined, chunk framing removed)."""

    status: int
    body: bytes


@dataclass
class _Pending:
    done: asyncio.Future[Response]
    body: bytearray = field(default_factory=bytearray)


class _Protocol(asyncio.Protocol):
    """Feeds received bytes to the parser and completes the request in flight."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: _Pending | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(ConnectionError(f"connection closed: {exc or 'by the server'}"))

    def on_body(self, body: bytes) -> None:
        if self.pending is not None:
            self.pending.body += body

    def on_message_complete(self) -> None:
        if self.pending is not None and not self.pending.done.done():
            self.pending.done.set_result(Response(self.parser.get_status_code(),
                                                  bytes(self.pending.body)))
        self.pending = None
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.transport.close()  # the server said "Connection: close"
            self.transport = None

    def _fail(self, exc: Exception) -> None:
        if self.pending is not None and not self.pending.done.done():
            self.pending.done.set_exception(exc)
        self.pending = None


class LoadConnection:
    """One keep-alive connection to ``url``'s host; reconnects after the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected an http:// URL, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self._protocol: _Protocol | None = None

    async def post_json(self, path: str, body: bytes, *, timeout_s: float) -> Response:
        """POST ``body`` (JSON bytes) to ``path``; raises ConnectionError or TimeoutError."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        transport = protocol.transport
        if transport is None:
            raise ConnectionError("connection closed before the request was sent")
        pending = _Pending(asyncio.get_running_loop().create_future())
        protocol.pending = pending
        transport.write(head.encode("ascii") + body)
        try:
            return await asyncio.wait_for(pending.done, timeout_s)
        except TimeoutError:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


async def drive_load(url: str, path: str, bodies: Callable[[int], bytes], *, concurrency: int,
                     requests: int, timeout_s: float = 120.0) -> tuple[list[float], int, float]:
    """Send ``requests`` POSTs (body ``bodies(i)``) from ``concurrency`` connections.

    Returns the latencies (ms) of the successful ones, the error count (non-200, closed,
    timed out) and the wall time (s).
    """
    queue = iter(range(requests))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        connection = LoadConnection(url)
        try:
            for i in queue:
                body = bodies(i)
                started = time.perf_counter()
                try:
                    response = await connection.post_json(path, body, timeout_s=timeout_s)
                except (ConnectionError, OSError, TimeoutError):
                    errors += 1
                    continue
                if response.status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started
