"""``POST /v1/embeddings``: OpenAI's embeddings endpoint, under the forget policy's input guards.

A model with ``backend: openai`` gets the client's request as sent (its ``model`` renamed to
``upstream_model`` when one is configured), and the client gets the upstream's body as returned.
The embedded engines (llama.cpp, transformers) have no embeddings, so the embedded MiniLM answers
for them, in float or base64 (little-endian float32, as OpenAI encodes it); token ids mean
nothing to it (a 400 naming ``input``). When a policy applies, each distinct input text is
admitted by its input guards as a chat request of one user turn (one request of many turns
would let the guards' last-turns window miss all but the last few); a block is a 400
``content_filter`` with ``x-should-retry: false``, as an embedding has no refusal text to
return. Token ids under a policy are a 400 too: no guard can read them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from contextlib import ExitStack
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from proxy.auth import check_rate, client_key, key_fingerprint
from proxy.backends.embeddings import local_embeddings, upstream_embeddings
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.core.config import OpenAIModelConfig
from proxy.core.errors import (
    InvalidRequestError,
    NotFoundError,
    PolicyBlockedError,
    UnsupportedError,
)
from proxy.core.types import GenerationParams
from proxy.pipeline import Decision, decision_headers, in_guard_thread
from proxy.pipeline import Request as PipelineRequest
from proxy.protocol import new_id
from proxy.request_body import parse_body, read_json
from proxy.runtime import Runtime

MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
_TOKEN = {"type": "integer", "minimum": 0}
_LIST = {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS}
INPUT_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "string"},
    {**_LIST, "items": {"type": "string"}},
    {**_LIST, "items": _TOKEN},
    {**_LIST, "items": {"type": "array", "minItems": 1, "items": _TOKEN}},
]}


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; unknown fields are allowed (and passed upstream)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: Annotated[Any, WithJsonSchema(INPUT_SCHEMA)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None

    @field_validator("input")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        """:data:`INPUT_SCHEMA`, exactly (JSON booleans are not token ids)."""
        if isinstance(value, str):
            return value
        if isinstance(value, list) and 1 <= len(value) <= MAX_INPUTS and (
            all(isinstance(v, str) for v in value) or all(_is_token(v) for v in value)
            or all(isinstance(v, list) and v and all(map(_is_token, v)) for v in value)
        ):
            return value
        raise ValueError(f"must be a string, or a list of 1 to {MAX_INPUTS} strings, token ids "
                         "(integers from 0) or non-empty lists of token ids")

    @cached_property
    def texts(self) -> list[str] | None:
        """The input as texts, or None when it is token ids."""
        if isinstance(self.input, str):
            return [self.input]
        return list(self.input) if all(isinstance(v, str) for v in self.input) else None


def embedding_list(model: str, vectors: np.ndarray, tokens: int, encoding: str) -> dict[str, Any]:
    """OpenAI's embeddings response for ``vectors`` (rows in input order)."""
    rows = np.asarray(vectors, dtype="<f4")
    data = [{"object": "embedding", "index": i, "embedding": (
        base64.b64encode(row.tobytes()).decode("ascii") if encoding == "base64" else row.tolist())}
        for i, row in enumerate(rows)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def serve_embeddings(request: Request) -> Response:
    """The route's answer, counted in the request metrics as endpoint ``embeddings``."""
    return await request.app.state.metrics.counted("embeddings", _serve(request))


async def _serve(request: Request) -> Response:
    key = client_key(request, admin=False)
    runtime: Runtime = request.app.state.holder.current
    server = runtime.config.server
    await check_rate(request, key, server.rate_limit_per_minute)
    data = await read_json(request)
    parsed = parse_body(EmbeddingRequest, data)
    cfg = runtime.config.models.get(parsed.model)
    if cfg is None:
        raise NotFoundError(
            f"the model {parsed.model!r} does not exist", param="model", code="model_not_found")
    texts = parsed.texts
    size = sum(map(len, texts)) if texts is not None else len(json.dumps(parsed.input))
    if size > server.max_prompt_chars:
        raise InvalidRequestError(
            f"the input is too long ({size} > {server.max_prompt_chars} characters)", param="input")
    policy_name = runtime.config.policy_for(parsed.model, key)
    _check_token_ids(parsed, embedded=not isinstance(cfg, OpenAIModelConfig), policy=policy_name)
    request_id = new_id("emb")
    with ExitStack() as done:  # as for a chat request: see proxy.server._serve
        done.callback(request.app.state.holder.users.acquire(runtime.backends[parsed.model]))
        done.callback(request.app.state.store.note_origin(
            request_id, actor=key_fingerprint(key), model=parsed.model))
        decision = await _admit(runtime, parsed, policy_name, request_id)
        headers = decision_headers(decision, request_id)
        if not isinstance(cfg, OpenAIModelConfig):
            body = await in_guard_thread(_embedded, parsed)
            return Response(body, media_type="application/json", headers=headers)
        backend = runtime.backends[parsed.model]
        if not isinstance(backend, OpenAICompatBackend):
            raise UnsupportedError("this model's backend has no embeddings", param="model")
        started = time.perf_counter()
        upstream = {**data, "model": cfg.upstream_model or parsed.model}  # in its place
        raw = await upstream_embeddings(backend, upstream)
        runtime.pipeline.metrics.upstream_latency.labels(parsed.model).observe(
            time.perf_counter() - started)
        return Response(raw, media_type="application/json", headers=headers)


def _embedded(parsed: EmbeddingRequest) -> bytes:
    """The embedded MiniLM's answer, as JSON (blocking: a large one takes a while to write)."""
    local = local_embeddings()
    if parsed.dimensions is not None and parsed.dimensions != local.dimensions:
        raise UnsupportedError(
            f"this model's embeddings have {local.dimensions} dimensions; it cannot give "
            f"{parsed.dimensions}", param="dimensions")
    vectors, tokens = local.embed(parsed.texts or [])
    body = embedding_list(parsed.model, vectors, tokens, parsed.encoding_format or "float")
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _check_token_ids(parsed: EmbeddingRequest, *, embedded: bool, policy: str | None) -> None:
    if parsed.texts is not None:
        return
    if embedded:
        raise InvalidRequestError(
            "this model embeds text only: send 'input' as a string or a list of strings, not "
            "token ids", param="input")
    if policy is not None:
        raise InvalidRequestError(
            "token ids cannot be checked by this model's forget policy: send 'input' as a "
            "string or a list of strings", param="input")


async def _admit(
    runtime: Runtime, parsed: EmbeddingRequest, policy_name: str | None, request_id: str
) -> Decision:
    """The input guards' decision on every distinct input text (each as a chat request of one
    user turn); raises :class:`PolicyBlockedError` when any is blocked."""
    policy = runtime.policies.get(policy_name or "")
    if policy is None or not policy.input_guards:
        return Decision(policy_name)
    started = time.perf_counter()
    requests = [
        PipelineRequest(kind="chat", model=parsed.model, messages=[{"role": "user", "content": t}],
                        params=GenerationParams(), request_id=request_id)
        for t in dict.fromkeys(parsed.texts or [])
    ]
    admitted = await asyncio.gather(*(runtime.pipeline.admit(r, policy_name) for r in requests))
    decisions = [decision for decision, _ in admitted]
    guard_ms = (time.perf_counter() - started) * 1000
    verdicts = [v for d in decisions for v in d.verdicts]
    blocking = next((d.blocking for d in decisions if d.blocking is not None), None)
    decision = Decision(policy_name, verdicts, blocking, guard_ms)
    if blocking is not None:
        raise PolicyBlockedError(f"the request was blocked by policy ({blocking.guard})",
                                 headers=decision_headers(decision, request_id))
    return decision
