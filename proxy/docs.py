"""The OpenAPI document and its pages (/openapi.json, /docs, /redoc), optionally behind a key.

The request bodies' schemas (:func:`proxy.request_body.body_schema`) refer to
``components/schemas``; their ``$defs`` are moved there, so every ``$ref`` resolves.
With ``server.protect_docs`` each of these routes needs a client or the admin key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from proxy.auth import require_reader


def _hoist_defs(document: dict[str, Any]) -> None:
    """Move every ``$defs`` under ``paths`` into ``components/schemas``, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    stack: list[Any] = [document.get("paths", {})]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            schemas.update(node.pop("$defs", {}))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def install_docs(app: FastAPI) -> None:
    """Serve the document and its pages (the app is made with ``openapi_url=None``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _hoist_defs(generate())
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]

    def check(request: Request) -> None:
        if request.app.state.holder.current.config.server.protect_docs:
            require_reader(request)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json(request: Request) -> JSONResponse:
        check(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        check(request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        check(request)
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
