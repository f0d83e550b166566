"""Unexpected exceptions as a 500 ``server_error`` envelope, on a connection that stays usable.

Starlette's own handler for ``Exception`` answers and then re-raises, and uvicorn closes the
connection of a request whose app raised: the client's next request on that keep-alive
connection was reset. :class:`ServerFaultMiddleware` answers and swallows the exception. Once
a response has started (a stream) nothing can be answered any more: the exception goes on,
and uvicorn ends the connection so the client sees the answer is incomplete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("unlearn_proxy.server")


class ServerFaultMiddleware:
    """Answers an exception the app let escape before its response started with
    ``respond(exc)`` and logs it (through the log redaction, see :mod:`proxy.core.redaction`)."""

    def __init__(self, app: ASGIApp, *, respond: Callable[[Exception], Response]) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await self.respond(exc)(scope, receive, send)
