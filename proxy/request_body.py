"""A client's JSON body, read once at the edge: size-limited while it streams in, then made safe.

Every string of the body (keys included) has its lone surrogates, NULs and the noncharacters
U+FFFE/U+FFFF replaced by U+FFFD before any guard, tokenizer or upstream sees it: no later
stage can fail on such text, and a forget question cannot hide behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from proxy.core.errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError

log = logging.getLogger("unlearn_proxy.request_body")

_INVALID = re.compile("[\x00\ud800-\udfff\ufffe\uffff]")
COMPONENTS = "#/components/schemas/"
REPLACEMENT = "\ufffd"
Body = TypeVar("Body", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a sanitised JSON object; 413 beyond ``server.max_body_bytes`` (before the
    rest is read), 408 when it takes longer than ``server.body_timeout_s`` to arrive (a
    trickling client holds nothing for long), 400 when it is not UTF-8, not JSON, nested too
    deeply or not an object."""
    server = request.app.state.holder.current.config.server
    limit = server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(server.body_timeout_s):
            async for part in request.stream():
                body += part
                if len(body) > limit:
                    raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {server.body_timeout_s:g} s",
            code="request_timeout") from None
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidRequestError("the request body is not valid UTF-8") from None
    except ValueError as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("the request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    replaced = sanitise(data)
    if replaced:
        log.info("replaced invalid code points in %d strings of a %s body", replaced, request.url.path)
        request.app.state.metrics.sanitised.inc(replaced)
    return data


def sanitise(data: dict[str, Any] | list[Any]) -> int:
    """Replace invalid code points by U+FFFD in every string of parsed JSON ``data``, in place
    (iteratively: any depth ``json`` parses); returns how many strings changed."""
    changed = 0
    stack: list[dict[str, Any] | list[Any]] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k in node if _INVALID.search(k)]:
                node[_INVALID.sub(REPLACEMENT, key)] = node.pop(key)
                changed += 1
        slots = node.items() if isinstance(node, dict) else enumerate(node)
        for slot, value in list(slots):
            if isinstance(value, str) and _INVALID.search(value):
                node[slot] = _INVALID.sub(REPLACEMENT, value)  # type: ignore[index]
                changed += 1
            elif isinstance(value, dict | list):
                stack.append(value)
    return changed


def parse_body(model: type[Body], data: dict[str, Any]) -> Body:
    """``data`` validated as ``model``; a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None
    except RecursionError:
        raise InvalidRequestError("the request body is nested too deeply") from None


def validation_error(errors: Any) -> InvalidRequestError:
    """The 400 for pydantic's ``errors``: the first one, with its field path as ``param``."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    where = f"'{param}': " if param else ""
    return InvalidRequestError(f"{where}{first.get('msg', 'invalid value')}", param=param)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring ``model`` as its required JSON body; the schema's
    ``$defs`` refer to ``components/schemas``, where the app's OpenAPI document moves them."""
    schema = model.model_json_schema(ref_template=COMPONENTS + "{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
