"""The FastAPI app: thin OpenAI-compatible routes over the pipeline, one error/SSE encoder."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from filters.embedder import embedder_circuits
from proxy import protocol
from proxy.admin import admin_router
from proxy.auth import (
    RateLimiter,
    SharedRateLimiter,
    check_rate,
    client_key,
    key_fingerprint,
    require_reader,
)
from proxy.core.types import NO_EXTRA, Chunk, Usage
from proxy.core.config import Config
from proxy.docs import install_docs
from proxy.embeddings import EmbeddingRequest, serve_embeddings
from proxy.core.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ProxyError,
    UnsupportedError,
)
from proxy.metrics import Metrics
from proxy.pipeline import AnswerStream, Request as PipelineRequest, decision_headers
from proxy.core.redaction import install_log_redaction, redact
from proxy.reload import ConfigReloader
from proxy.responses_request import ResponsesRequest
from proxy.responses_wire import ResponseEvents, output_items, response_object
from proxy.request_body import body_schema, parse_body, read_json, validation_error
from proxy.runtime import Runtime, RuntimeHolder, build_runtime
from proxy.server_faults import ServerFaultMiddleware
from proxy.sse import DONE, SLOT, EventTemplate, event
from proxy.store import Store, open_store
from proxy.store_postgres import PostgresStore
from proxy.store_watch import StoreWatcher

log = logging.getLogger("unlearn_proxy.server")
T = TypeVar("T")


def create_app(config: Config, *, config_path: Path | None = None, watch: bool = False) -> FastAPI:
    """Build the app; compiles policies and loads models before returning. Log records of the
    process are redacted from now on."""
    install_log_redaction()
    base_dir = config_path.parent if config_path else Path.cwd()
    metrics = Metrics()
    store = open_store(config.server.store, config.server.state_dir)
    holder = RuntimeHolder(build_runtime(config, base_dir=base_dir, metrics=metrics, store=store))
    reloader = ConfigReloader(config_path, holder, metrics=metrics, store=store) if config_path else None
    watcher = None
    if isinstance(store, PostgresStore):  # other replicas' changes, applied here
        watcher = StoreWatcher(store, holder, reconcile_s=config.server.store.reconcile_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if reloader is not None:
            reloader.start(watch=watch)
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await asyncio.to_thread(watcher.stop)
            if reloader is not None:
                await reloader.stop()
            for backend in set(holder.current.backends.values()):
                await backend.aclose()
            store.close()

    app = FastAPI(title="unlearn-proxy", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # proxy.docs serves them
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.store = store
    app.state.rate_limiter = (SharedRateLimiter(store) if isinstance(store, PostgresStore)
                              else RateLimiter())
    app.state.watcher = watcher
    app.state.reloader = reloader
    _install_error_handlers(app)
    _install_routes(app)
    app.include_router(admin_router)
    install_docs(app)
    return app


def _envelope(exc: ProxyError) -> dict[str, Any]:
    """The error's envelope with its message redacted: every error a client sees goes here."""
    body = exc.envelope()
    body["error"]["message"] = redact(body["error"]["message"])
    return body


def _error_response(exc: ProxyError) -> JSONResponse:
    return JSONResponse(_envelope(exc), status_code=exc.status_code, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    metrics: Metrics = app.state.metrics

    @app.exception_handler(ProxyError)
    async def proxy_error(_: Request, exc: ProxyError) -> JSONResponse:
        metrics.errors.labels(exc.error_type).inc()
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request_error").inc()
        return _error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: ProxyError
        if exc.status_code == 404:
            error = NotFoundError(f"unknown URL {request.method} {request.url.path}")
        else:  # 405 and other routing errors
            error = InvalidRequestError(str(exc.detail))
            error.status_code = exc.status_code
        metrics.errors.labels(error.error_type).inc()
        return _error_response(error)

    def server_fault(_: Exception) -> JSONResponse:  # logged by the middleware
        metrics.errors.labels("server_error").inc()
        return _error_response(ProxyError("internal server error"))

    app.add_middleware(ServerFaultMiddleware, respond=server_fault)


def _check_limits(runtime: Runtime, parsed: Any, pipeline_request: PipelineRequest) -> None:
    server = runtime.config.server
    if len(pipeline_request.messages) > server.max_messages:
        raise InvalidRequestError(
            f"too many messages ({len(pipeline_request.messages)} > {server.max_messages})",
            param="messages",
        )
    for field in ("max_tokens", "max_completion_tokens"):  # each as the client sent it
        asked = getattr(parsed, field)
        if asked is not None and asked > server.max_tokens_limit:
            raise InvalidRequestError(
                f"{field}={asked} exceeds this server's limit of {server.max_tokens_limit}",
                param=field,
            )
    size = len(json.dumps(pipeline_request.guard_messages, ensure_ascii=False))
    if size > server.max_prompt_chars:
        raise InvalidRequestError(
            f"the prompt is too long ({size} > {server.max_prompt_chars} characters)",
            param="messages" if parsed.__class__ is protocol.ChatCompletionRequest else "prompt",
        )


# a completion is JSON, or with ``stream: true`` server-sent events
STREAMABLE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}}}


def _install_routes(app: FastAPI) -> None:
    @app.post(
        "/v1/chat/completions",
        openapi_extra=body_schema(protocol.ChatCompletionRequest),
        responses=STREAMABLE,
    )
    async def chat_completions(request: Request) -> Response:
        return await _handle(request, "chat")

    @app.post("/v1/completions", openapi_extra=body_schema(protocol.CompletionRequest),
              responses=STREAMABLE)
    async def completions(request: Request) -> Response:
        return await _handle(request, "completion")

    @app.post("/v1/responses", openapi_extra=body_schema(ResponsesRequest), responses=STREAMABLE)
    async def responses(request: Request) -> Response:
        return await _handle(request, "responses")

    @app.api_route("/v1/responses/{response_id}/{rest:path}", methods=["GET", "POST", "DELETE"],
                   include_in_schema=False)
    @app.api_route("/v1/responses/{response_id}", methods=["GET", "DELETE"],
                   include_in_schema=False)
    async def stored_response(request: Request) -> Response:
        client_key(request, admin=False)
        raise UnsupportedError(
            "stored responses are not supported: this proxy keeps no responses (each "
            "POST /v1/responses answers in full, streamed or not)", param="response_id")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        client_key(request, admin=False)
        names = request.app.state.holder.current.model_names
        return {"object": "list", "data": [_model_object(n) for n in names]}

    @app.get("/v1/models/{model:path}")
    async def model(request: Request, model: str) -> dict[str, Any]:
        client_key(request, admin=False)
        if model not in request.app.state.holder.current.config.models:
            raise NotFoundError(
                f"the model {model!r} does not exist", param="model", code="model_not_found")
        return _model_object(model)

    @app.post("/v1/embeddings", openapi_extra=body_schema(EmbeddingRequest))
    async def embeddings(request: Request) -> Response:
        return await serve_embeddings(request)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: ``ok``, or ``degraded`` while an embedder's circuit is open (guards fail
        fast; each policy's ``fail_mode`` decides the answers). The models, policies and
        circuits too, unless ``server.protect_metrics`` hides them from a request without a
        client or admin key."""
        runtime: Runtime = request.app.state.holder.current
        embedders = (policy.embedder for policy in runtime.config.policies.values())
        circuits = {model_id: b.state for model_id, b in embedder_circuits(embedders).items()}
        status = "ok" if all(state == "closed" for state in circuits.values()) else "degraded"
        if runtime.config.server.protect_metrics:
            try:
                require_reader(request)
            except AuthenticationError:
                return {"status": status}
        return {"status": status, "models": runtime.model_names,
                "policies": sorted(runtime.policies), "embedder_circuits": circuits}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 200 once the policies are compiled, the store answers and (with a shared
        store) this replica has caught up with it; else 503 with the reasons."""
        store: Store = request.app.state.store
        watcher: StoreWatcher | None = request.app.state.watcher
        reasons = [why for why in (await asyncio.to_thread(store.ready),
                                   watcher.not_ready() if watcher is not None else None) if why]
        if reasons:
            return JSONResponse({"status": "not_ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        if request.app.state.holder.current.config.server.protect_metrics:
            require_reader(request)
        body = request.app.state.metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _model_object(name: str) -> dict[str, Any]:
    """A model as ``GET /v1/models`` lists it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "unlearn-proxy"}


async def _handle(request: Request, kind: str) -> Response:
    metrics: Metrics = request.app.state.metrics
    route = {"chat": "chat", "completion": "completions", "responses": "responses"}[kind]
    return await metrics.counted(route, _serve(request, kind))


_ID_PREFIX = {"chat": "chatcmpl", "completion": "cmpl", "responses": "resp"}


async def _serve(request: Request, kind: str) -> Response:
    key = client_key(request, admin=False)
    runtime: Runtime = request.app.state.holder.current
    await check_rate(request, key, runtime.config.server.rate_limit_per_minute)
    data = await read_json(request)
    responses: ResponsesRequest | None = None
    if kind == "responses":  # answered as the chat request it translates into
        responses = parse_body(ResponsesRequest, data)
        data = responses.chat_body()
    parsed: Any = parse_body(
        protocol.CompletionRequest if kind == "completion" else protocol.ChatCompletionRequest,
        data)
    if parsed.model not in runtime.config.models:
        raise NotFoundError(
            f"the model {parsed.model!r} does not exist", param="model", code="model_not_found"
        )
    request_id = protocol.new_id(_ID_PREFIX[kind], "_" if responses else "-")
    # until the answer is sent: a reload closes a replaced backend once no request uses it,
    # and the blocks this request audits name its key and model
    done = ExitStack()
    done.callback(request.app.state.holder.users.acquire(runtime.backends[parsed.model]))
    done.callback(request.app.state.store.note_origin(
        request_id, actor=key_fingerprint(key), model=parsed.model))
    try:
        response = await _answer(runtime, parsed, key, request_id, responses, request)
    except ClientGone:
        done.close()
        log.info("client went away before its answer began: %s cancelled", request_id)
        return Response(status_code=499)  # nobody reads it; counted as 499
    except BaseException:
        done.close()
        raise
    if isinstance(response, StreamingResponse):
        response.body_iterator = _releasing(response.body_iterator, done.close)
    else:
        done.close()
    return response


async def _releasing(body: AsyncIterable[Any], release: Callable[[], None]) -> AsyncIterator[Any]:
    """``body``, then ``release()`` (also when the client goes away mid-stream)."""
    try:
        async for part in body:
            yield part
    finally:
        release()


class ClientGone(Exception):
    """The client closed the connection before its answer began."""


async def _unless_gone(request: Request, answer: Awaitable[T]) -> T:
    """``answer``, unless the client goes away first: then it is cancelled at once (and the
    upstream call with it: its connection is closed) and :class:`ClientGone` raised. The
    body has been read, so the next ASGI message is the disconnect."""
    work = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        gone.cancel()
    if not work.done():
        work.cancel()
        raise ClientGone()
    return work.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answer(
    runtime: Runtime, parsed: Any, key: str | None, request_id: str,
    responses: ResponsesRequest | None, request: Request,
) -> Response:
    """The answer to a parsed request for one of ``runtime``'s models (a Responses request's
    in its own objects and events)."""
    chat = isinstance(parsed, protocol.ChatCompletionRequest)
    pipeline_request = PipelineRequest(
        kind="chat" if chat else "completion",
        model=parsed.model,
        messages=parsed.plain_messages() if chat else [],
        prompt=None if chat else parsed.prompt_text,
        params=parsed.generation_params(),
        request_id=request_id,
    )
    _check_limits(runtime, parsed, pipeline_request)
    policy_name = runtime.config.policy_for(parsed.model, key)
    if parsed.stream:
        stream = runtime.pipeline.answer_stream(pipeline_request, policy_name)
        # errors before the first chunk (an upstream failure, a block with on_block: error, a
        # guard outage) surface here as HTTP status codes; after it, the decision is in the
        # headers
        first = await _unless_gone(request, anext(aiter(stream), None))
        headers = decision_headers(stream.decision, request_id)
        if responses is not None:
            events = ResponseEvents(responses, request_id)
            body = _response_events(first, aiter(stream), events)
        else:
            factory = protocol.ChunkFactory(kind=pipeline_request.kind, request_id=request_id,
                                            model=parsed.model)
            body = _sse_body(first, aiter(stream), factory, include_usage=parsed.include_usage)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
    reply = await _unless_gone(request, runtime.pipeline.answer(pipeline_request, policy_name))
    if responses is not None:
        choice = reply.choices[0]
        content = response_object(responses, request_id, int(time.time()),
                                  output_items(choice), choice.finish_reason, reply.usage)
    else:
        build = protocol.chat_completion if chat else protocol.text_completion
        content = build(request_id=request_id, model=parsed.model, choices=reply.choices,
                        usage=reply.usage)
    return JSONResponse(content, headers=decision_headers(reply.decision, request_id))


async def _response_events(
    first: Chunk | None, rest: AsyncIterator[Chunk], events: ResponseEvents
) -> AsyncIterator[bytes]:
    """A Responses stream: the opening events with the first chunk's, then each chunk's as
    it comes, then the end (or an ``error`` event for an error after the first byte)."""
    out, chunk = events.opening(), first
    try:
        while chunk is not None:
            out += events.feed(chunk)
            if out:
                yield out
                out = b""
            chunk = await anext(rest, None)
    except ProxyError as exc:
        log.info("stream ended with %s: %s", type(exc).__name__, redact(exc.message))
        yield out + events.error(exc, _envelope(exc)["error"]["message"])
        return
    yield out + events.end()


async def _sse_body(
    first: Chunk | None,
    rest: AsyncIterator[Chunk],
    factory: protocol.ChunkFactory,
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The SSE body; events that are ready together go out in one write (a choice's role
    event with its first text, and the finish chunk with the usage chunk and ``[DONE]``). A
    chunk with the upstream's own fields (``extra``) is an event of its own; those of an
    upstream's opening event (a choice's first chunk with a role and no text) are the role
    event's. Each choice of a chat stream opens with its role event."""
    content = EventTemplate(factory.choice(SLOT))  # the plain text events of choice 0
    chat = factory.kind == "chat"
    opened: set[int] = set()
    chunk, out = first, b""
    usage: Usage | None = None
    try:
        while chunk is not None:
            usage = chunk.usage or usage
            index = chunk.index
            if chat and index not in opened:
                opened.add(index)
                opening = chunk.extra if "role" in chunk.extra.message and not (
                    chunk.text or chunk.finish_reason or chunk.usage) else NO_EXTRA
                out += event(factory.choice("", first=True, extra=opening, index=index))
                if opening:
                    chunk = await anext(rest, None)
                    continue
            if chunk.extra and not chunk.finish_reason:
                text = chunk.text if chunk.text or not chat else None
                out += event(factory.choice(text, extra=chunk.extra, index=index))
            elif chunk.text:
                out += (content.render(chunk.text) if index == 0
                        else event(factory.choice(chunk.text, index=index)))
            if chunk.finish_reason:  # what follows a finish reason is mostly the end
                out += event(factory.choice(None if chat else "", chunk.finish_reason,
                                            extra=chunk.extra, index=index))
            elif out and (chunk.text or chunk.extra):
                yield out
                out = b""
            chunk = await anext(rest, None)
    except ProxyError as exc:
        log.info("stream ended with %s: %s", type(exc).__name__, redact(exc.message))
        yield out + event(_envelope(exc)) + DONE
        return
    if include_usage:
        out += event(factory.usage(usage or Usage(0, 0)))
    yield out + DONE
