"""Fuzzing: schema-driven (schemathesis) and hand-made malformed bodies never give a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from benchmarks.stub_upstream import build_app as build_stub
from proxy.core.config import parse_config
from proxy.server import create_app
from tests.servers import thread_server

POLICY = {
    "forget": [{"id": "jk-rowling", "name": "J. K. Rowling", "questions": ["Who wrote Harry Potter?"]}],
    "methods": [{"type": "input_detector"}, {"type": "prefix"}, {"type": "output_filter"}],
}


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("fuzz")
    with thread_server(build_stub(latency_ms=0, tokens=4)) as upstream:
        config = parse_config({
            "server": {"state_dir": str(state), "max_body_bytes": 100_000},
            "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
            "policies": {"p": POLICY},
            "routing": {"default_policy": "p"},
        })
        with thread_server(create_app(config)) as url:
            yield url


def _assert_clean(response: httpx.Response | schemathesis.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_schema_driven_fuzzing(fuzz_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")
    operations = [
        op.ok() for op in schema.get_all_operations()
        if op.ok().path in ("/v1/chat/completions", "/v1/completions")
    ]
    assert len(operations) == 2
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            _assert_clean(case.call(base_url=fuzz_url, timeout=30))

        given(strategy)(check)()


DEEP = b'{"model": "stub", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
MALFORMED = [
    b"",
    b"null",
    b'"a string"',
    b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}',
    b'{"model": "stub", "messages": [{"role": "user"}]}',
    b'{"model": "stub", "messages": [{"role": "user", "content": 12}]}',
    b'{"model": "stub", "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}',
    b'{"model": "stub", "messages": [{"content": "no role"}]}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "x"}], "stream_options": 3}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "x"}], "n": 0}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "x"}], "top_p": 0}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "stub", "messages": [{"role": "user", "content": "' + "é".encode("latin-1") + b'"}]}',
    DEEP,
    json.dumps({"model": "stub", "messages": [{"role": "user", "content": "y" * 90_000}]}).encode(),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies(fuzz_url: str, path: str, body: bytes) -> None:
    response = httpx.post(f"{fuzz_url}{path}", content=body, headers={"content-type": "application/json"})
    _assert_clean(response)
    assert response.status_code in (200, 400, 413)


def test_unknown_routes_and_methods(fuzz_url: str) -> None:
    for response in (httpx.get(f"{fuzz_url}/v1/nothing"), httpx.get(f"{fuzz_url}/v1/chat/completions")):
        _assert_clean(response)
        assert response.status_code in (404, 405)
