"""Every documented way a block reaches the client, and its audit record
(docs/ARCHITECTURE.md, "Blocks on the wire").

The real server and ``openai`` backend in front of an echoing upstream process
(``benchmarks.stub_upstream --echo``): the answer is the request's own text, so an input-side
policy (``input_detector``) blocks the prompt and an output-side policy (``output_filter``)
blocks the same words in the answer. Per ``on_block`` × ``stream_block``, chat and completions,
streamed and not: the HTTP status, the error envelope (a block is a 400
``invalid_request_error`` with code ``content_filter``, never a 5xx), ``x-should-retry: false``,
the refusal or feigned text and finish reason, and the audit record read back through
``GET /admin/audit``. Then ``fail_mode`` when a guard's embedder (real MiniLM behind an
OpenAI-style endpoint) has become unreachable.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from filters.embedder import build_embedder
from proxy.core.config import EmbedderConfig, PolicyConfig, parse_config
from proxy.server import create_app
from tests.policies import FORBIDDEN, rowling_policy
from tests.servers import stub_upstream_process, thread_server
from tests.sse_client import Kind, RawResponse, post, received, request_body

pytestmark = pytest.mark.slow

ADMIN_ENV, ADMIN_KEY = "UNLEARN_TEST_BLOCK_MODES_ADMIN_KEY", "sk-block-modes-admin"
SIDES = {"input": {"type": "input_detector"}, "output": {"type": "output_filter"}}
ON_BLOCK, STREAM_BLOCK = ("refuse", "error", "feign"), ("graceful", "strict")
# fail_mode closed (a 503 by default, or fail_closed_as: block) and open
FAIL_MODES = {"closed": {"fail_mode": "closed"},
              "closed-block": {"fail_mode": "closed", "fail_closed_as": "block"},
              "open": {"fail_mode": "open"}}
KINDS: tuple[Kind, ...] = ("chat", "completion")
# the alias is in the prompt, so in the echoed answer; shorter than any hold-back window, so
# an output-side stream block comes before the first byte
LEAK = "Joanne Rowling was born in Yate, Gloucestershire."
ALLOWED = "Paris is the capital of France."
DEFAULTS = PolicyConfig.model_fields
REFUSAL, FEIGN = DEFAULTS["refusal_text"].default, DEFAULTS["feign_text"].default
ANSWERS = {"refuse": (REFUSAL, "content_filter"), "feign": (FEIGN, "stop")}


def _minilm_embeddings() -> FastAPI:
    """An OpenAI-style ``/v1/embeddings`` endpoint serving the embedded MiniLM's vectors."""
    embedder = build_embedder(EmbedderConfig())
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(body: dict[str, Any]) -> dict[str, Any]:
        vectors = embedder.embed(list(body["input"]))
        rows = [{"index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        return {"object": "list", "data": rows}

    return app


def _policies(embed_url: str) -> dict[str, dict[str, Any]]:
    policies = {
        f"{side}-{on_block}-{stream_block}": rowling_policy(
            [method], on_block=on_block, stream_block=stream_block)
        for (side, method), on_block, stream_block
        in itertools.product(SIDES.items(), ON_BLOCK, STREAM_BLOCK)
    }
    remote = {"type": "openai", "base_url": f"{embed_url}/v1", "model": "minilm"}
    failing = {"input": {"type": "input_detector", "aliases": False}, "output": SIDES["output"]}
    for (side, method), (mode, fields) in itertools.product(failing.items(), FAIL_MODES.items()):
        policies[f"fail-{side}-{mode}"] = rowling_policy([method], embedder=remote, **fields)
    return policies


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server, one model per policy (routed to it by name)."""
    with pytest.MonkeyPatch.context() as env, \
            stub_upstream_process("--echo", "--event-delay-ms", "5") as upstream:
        env.setenv(ADMIN_ENV, ADMIN_KEY)
        with thread_server(_minilm_embeddings()) as embed_url:
            policies = _policies(embed_url)
            app = create_app(parse_config({
                "server": {"state_dir": str(tmp_path_factory.mktemp("modes")),
                           "admin_key_env": ADMIN_ENV},
                "models": {name: {"backend": "openai", "base_url": f"{upstream}/v1"}
                           for name in policies},
                "policies": policies,
                "routing": {"models": {name: name for name in policies}},
            }))
        # the embeddings endpoint is gone now: the fail-* policies' guards raise
        with thread_server(app) as url:
            yield url


def _audit_after(url: str, seq: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/admin/audit", params={"after": seq, "limit": 1000},
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


@pytest.fixture
def new_audit(proxy_url: str) -> Callable[[], list[dict[str, Any]]]:
    """The audit records written since the test started (tests run one at a time)."""
    existing = _audit_after(proxy_url, 0)
    last = existing[-1]["seq"] if existing else 0
    return lambda: _audit_after(proxy_url, last)


def _request(url: str, kind: Kind, model: str, text: str, *, stream: bool) -> RawResponse:
    return post(url, kind, request_body(kind, model, text, stream=stream))


def _assert_block_envelope(raw: RawResponse) -> None:
    """Before any byte: a 400 JSON envelope the SDK never retries."""
    assert raw.status == 400, raw.body
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-should-retry"] == "false"
    error = received(raw, "chat", stream=False).error or {}
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error", None, "content_filter")
    assert "blocked by policy" in error["message"]


def _assert_audited(records: list[dict[str, Any]], policy: str, method: str,
                    target_id: str | None, request_id: str | None, action: str = "block") -> None:
    assert len(records) == 1, records
    (record,) = records
    assert {k: record[k] for k in ("action", "policy", "method", "target_id", "prompt")} == {
        "action": action, "policy": policy, "method": method, "target_id": target_id,
        "prompt": None,  # audit_prompts is off by default
    }
    if request_id is not None:
        assert record["request_id"] == request_id


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream_block", STREAM_BLOCK)
@pytest.mark.parametrize("on_block", ON_BLOCK)
@pytest.mark.parametrize("side", SIDES)
def test_block_reaches_the_client_as_documented(
    proxy_url: str, new_audit: Callable[[], list[dict[str, Any]]],
    side: str, on_block: str, stream_block: str, kind: Kind, stream: bool,
) -> None:
    policy = f"{side}-{on_block}-{stream_block}"
    raw = _request(proxy_url, kind, policy, LEAK if side == "output" else f"Tell me: {LEAK}",
                   stream=stream)
    assert not [word for word in FORBIDDEN if word.encode() in raw.body.lower()], raw.body
    # strict only changes a block that happens while a stream is under way (an output block)
    strict = stream and side == "output" and stream_block == "strict"
    if on_block == "error" or strict:
        _assert_block_envelope(raw)
    else:
        got = received(raw, kind, stream=stream)
        assert raw.status == 200
        assert (got.contents, got.finish_reason, got.error) == ((ANSWERS[on_block][0],),
                                                                ANSWERS[on_block][1], None)
        assert raw.headers["x-unlearn-decision"] == "block"
        assert raw.headers["x-should-retry"] == "false"
    method = "input_detector" if side == "input" else "output_filter"
    _assert_audited(new_audit(), policy, method, "jk-rowling", raw.headers.get("x-request-id"))


@pytest.mark.parametrize("on_block", ["refuse", "feign"])
def test_streamed_output_block_headers(proxy_url: str, on_block: str) -> None:
    """Blocks on the wire (docs/ARCHITECTURE.md): a policy block carries
    ``x-should-retry: false`` (as the same request without
    streaming does), and so does a stream blocked before its first byte."""
    raw = _request(proxy_url, "chat", f"output-{on_block}-graceful", LEAK, stream=True)
    assert received(raw, "chat", stream=True).contents == (ANSWERS[on_block][0],)
    assert raw.headers.get("x-should-retry") == "false"
    assert raw.headers["x-unlearn-decision"] == "block"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", SIDES)
def test_allowed_request_is_answered_and_not_audited(
    proxy_url: str, new_audit: Callable[[], list[dict[str, Any]]],
    side: str, kind: Kind, stream: bool,
) -> None:
    raw = _request(proxy_url, kind, f"{side}-error-strict", ALLOWED, stream=stream)
    got = received(raw, kind, stream=stream)
    assert (raw.status, got.text, got.finish_reason, got.error) == (200, ALLOWED, "stop", None)
    assert raw.headers["x-unlearn-decision"] == "allow"
    assert "x-should-retry" not in raw.headers
    assert new_audit() == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fail_mode", FAIL_MODES)
@pytest.mark.parametrize("side", SIDES)
def test_fail_mode_when_the_embedder_is_unreachable(
    proxy_url: str, new_audit: Callable[[], list[dict[str, Any]]],
    side: str, fail_mode: str, stream: bool,
) -> None:
    """An outage is never a block. closed: a 503 ``server_error`` the SDK retries (before any
    byte, streamed or not); closed with ``fail_closed_as: block``: the refusal, marked
    ``guard_failed``; open: answered as if the guard had allowed it, the header naming the
    guard that failed. Audited as ``guard_failed`` in every mode."""
    text = f"Tea grows on the hills of Assam ({uuid.uuid4().hex[:8]}). Pickers work by hand."
    policy = f"fail-{side}-{fail_mode}"
    raw = _request(proxy_url, "chat", policy, text, stream=stream)
    got = received(raw, "chat", stream=stream)
    guard = "input_detector" if side == "input" else "output_filter"
    request_id = raw.headers.get("x-request-id")
    if fail_mode == "closed":
        assert (raw.status, raw.headers["x-should-retry"]) == (503, "true"), raw.body
        assert raw.headers["content-type"] == "application/json"
        error = received(raw, "chat", stream=False).error or {}
        assert (error["type"], error["code"]) == ("server_error", None)
        assert f"{guard} of policy {policy} is unavailable" in error["message"]
    elif fail_mode == "closed-block":
        assert (raw.status, got.contents, got.finish_reason) == (
            200, (REFUSAL,), "content_filter")
        assert raw.headers["x-unlearn-decision"] == "guard_failed"
    else:
        assert (raw.status, got.text, got.finish_reason) == (200, text, "stop")
        if side == "input":
            assert raw.headers["x-unlearn-guard-failed"] == f"{guard}:failed"
    _assert_audited(new_audit(), policy, f"{guard}:failed", None, request_id, "guard_failed")
    metrics = httpx.get(f"{proxy_url}/metrics").text
    mode = FAIL_MODES[fail_mode]["fail_mode"]
    assert (f'unlearn_guard_failures_total{{fail_mode="{mode}",guard="{guard}",'
            f'policy="{policy}"}}') in metrics


def test_the_sdk_sees_the_documented_errors(proxy_url: str) -> None:
    """The official SDK: a 400 ``BadRequestError`` before any byte, and mid-stream (strict) an
    ``APIError`` after text that shows nothing of the target."""
    client = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="unused", max_retries=2)
    messages: Any = [{"role": "user", "content": f"Tell me: {LEAK}"}]
    with pytest.raises(openai.BadRequestError) as blocked:
        client.chat.completions.create(model="input-error-graceful", messages=messages)
    assert blocked.value.code == "content_filter"
    assert blocked.value.response.headers["x-should-retry"] == "false"
    story = f"{ALLOWED} " * 10 + LEAK  # longer than the hold-back: text goes out first
    seen = []
    with pytest.raises(openai.APIError, match="blocked by policy") as ended:
        for chunk in client.chat.completions.create(
            model="output-refuse-strict", stream=True,
            messages=[{"role": "user", "content": story}],
        ):
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert ended.value.code == "content_filter"
    assert "".join(seen) and story.startswith("".join(seen))
    assert "Rowling" not in "".join(seen)
