"""A lean HTTP/1.1 load generator: keep-alive connections, responses parsed by httptools.

A load benchmark on two cores measures its own client as much as the server when the client is
heavy: an ``httpx.AsyncClient`` spends about as much CPU per request as the proxy under test.
This client writes a prepared request and lets ``httptools`` (the C parser uvicorn uses) read
the answer, streamed (chunked) or not, so nearly all of the machine is left to the servers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

__all__ = ["LoadConnection", "LoadRun", "Response", "drive_load"]


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


@dataclass
class LoadRun:
    """One drive's outcome: latencies (ms) of the successful requests, the errors (non-200,
    closed, timed out), the successes that ended inside the throughput window, and how many
    requests were sent (``bodies(i)`` for ``i`` below it)."""

    latencies_ms: list[float]
    errors: int
    completed: int
    window_s: float
    sent: int = 0

    @property
    def rps(self) -> float:
        return self.completed / self.window_s

    def __add__(self, other: LoadRun) -> LoadRun:
        return LoadRun(self.latencies_ms + other.latencies_ms, self.errors + other.errors,
                       self.completed + other.completed, self.window_s + other.window_s,
                       self.sent + other.sent)


async def drive_load(url: str, path: str, bodies: Callable[[int], bytes], *, concurrency: int,
                     requests: int | None = None, duration_s: float | None = None,
                     warmup_s: float = 0.0, timeout_s: float = 120.0) -> LoadRun:
    """POST ``bodies(i)`` to ``path`` from ``concurrency`` keep-alive connections in a closed
    loop, either ``requests`` times or for ``warmup_s`` then ``duration_s`` seconds (like
    ``hey -n`` / ``-z``).

    A timed drive counts as throughput what completes inside its window, so neither the
    clients' synchronised start (all send at once, then wait on the upstream at once) nor
    their drain at the end is counted; latencies are those of the requests sent inside the
    window; requests still in flight at its end are awaited. Errors are always all counted.
    With a request count the window is the whole wall time.
    """
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests and duration_s")
    queue = iter(range(requests) if requests is not None else itertools.count())
    answered: list[tuple[float, float]] = []  # (sent, done) of each success
    errors = sent_count = 0
    started = time.perf_counter()
    opens = started + warmup_s
    closes = opens + duration_s if duration_s is not None else float("inf")

    async def worker() -> None:
        nonlocal errors, sent_count
        connection = LoadConnection(url)
        try:
            for i in queue:
                body = bodies(i)
                sent = time.perf_counter()
                if sent >= closes:
                    break
                sent_count += 1
                try:
                    response = await connection.post_json(path, body, timeout_s=timeout_s)
                except (ConnectionError, OSError, TimeoutError):
                    errors += 1
                    continue
                if response.status == 200:
                    answered.append((sent, time.perf_counter()))
                else:
                    errors += 1
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if duration_s is None:
        latencies = [(done - sent) * 1000 for sent, done in answered]
        return LoadRun(latencies, errors, len(answered), time.perf_counter() - started, sent_count)
    latencies = [(done - sent) * 1000 for sent, done in answered if sent >= opens]
    completed = sum(opens <= done <= closes for _, done in answered)
    return LoadRun(latencies, errors, completed, duration_s, sent_count)
