"""The OpenAPI document and its pages (/openapi.json, /docs, /redoc), optionally behind a key.

The request bodies' schemas (:func:`proxy.request_body.body_schema`) refer to
``components/schemas``; their ``$defs`` are moved there, so every ``$ref`` resolves. Every
operation declares its errors as they are sent: the OpenAI envelope (``default``), not
FastAPI's 422 ``HTTPValidationError`` (a validation error is a 400 envelope here).
With ``server.protect_docs`` each of these routes needs a client or the admin key.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from proxy.auth import require_reader
from proxy.core.errors import ProxyError


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


def _error_types() -> list[str]:
    """Every ``error.type`` the proxy sends (one per class of :mod:`proxy.core.errors`)."""
    types: set[str] = set()
    stack: list[type[ProxyError]] = [ProxyError]
    while stack:
        cls = stack.pop()
        types.add(cls.error_type)
        stack.extend(cls.__subclasses__())
    return sorted(types)


def _error_schemas() -> dict[str, Any]:
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    return {
        "Error": {
            "type": "object", "additionalProperties": False,
            "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string", "minLength": 1},
                           "type": {"enum": _error_types()}, "param": nullable, "code": nullable},
        },
        "ErrorResponse": {
            "type": "object", "additionalProperties": False, "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/Error"}},
        },
    }


def _declare_errors(document: dict[str, Any]) -> None:
    """Give every operation the envelope as its ``default`` response, in place."""
    error = {"description": "An error, in the OpenAI envelope", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = error
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_error_schemas())


def install_docs(app: FastAPI) -> None:
    """Serve the document and its pages (the app is made with ``openapi_url=None``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _hoist_defs(generate())
            _declare_errors(generate())
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
