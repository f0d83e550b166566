"""Limits, rate limits, guard failures (fail_mode) and secrets that must never leak."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from benchmarks.stub_upstream import build_app as build_stub
from proxy.core.config import parse_config
from proxy.server import create_app
from tests.servers import fake_upstream, process_output, process_server, thread_server, write_config

SECRET = "sk-upstream-secret-must-not-leak-42"


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with thread_server(build_stub(latency_ms=0, tokens=4)) as url:
        yield url


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)


def test_rate_limit_per_key(stub_url: str, tmp_path: Path) -> None:
    config = parse_config({
        "server": {"state_dir": str(tmp_path), "rate_limit_per_minute": 3, "api_keys": ["k1", "k2"]},
        "models": {"stub": {"backend": "openai", "base_url": f"{stub_url}/v1"}},
    })
    with thread_server(create_app(config)) as url:
        messages = [{"role": "user", "content": "hi"}]
        for _ in range(3):
            _client(url).chat.completions.create(model="stub", messages=messages)
        with pytest.raises(openai.RateLimitError) as info:
            _client(url).chat.completions.create(model="stub", messages=messages)
        assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
        other = openai.OpenAI(base_url=f"{url}/v1", api_key="k2", max_retries=0)
        assert other.chat.completions.create(model="stub", messages=messages).choices


def test_open_server_rate_limits_by_address_not_by_token(stub_url: str, tmp_path: Path) -> None:
    """Without ``api_keys`` any token is accepted unchecked, so a fresh random token per
    request must not reset the limit."""
    config = parse_config({
        "server": {"state_dir": str(tmp_path), "rate_limit_per_minute": 3},
        "models": {"stub": {"backend": "openai", "base_url": f"{stub_url}/v1"}},
    })
    with thread_server(create_app(config)) as url:
        statuses = [
            httpx.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer r{i}"},
                       json={"model": "stub", "messages": [{"role": "user", "content": "hi"}]},
                       ).status_code
            for i in range(5)
        ]
    assert statuses == [200, 200, 200, 429, 429]


def test_message_count_prompt_size_and_token_limits(stub_url: str, tmp_path: Path) -> None:
    config = parse_config({
        "server": {"state_dir": str(tmp_path), "max_messages": 2, "max_prompt_chars": 500,
                   "max_tokens_limit": 64},
        "models": {"stub": {"backend": "openai", "base_url": f"{stub_url}/v1"}},
    })
    with thread_server(create_app(config)) as url:
        with pytest.raises(openai.BadRequestError, match="too many messages"):
            _client(url).chat.completions.create(
                model="stub", messages=[{"role": "user", "content": "x"}] * 3
            )
        with pytest.raises(openai.BadRequestError, match="too long"):
            _client(url).completions.create(model="stub", prompt="z" * 600)
        with pytest.raises(openai.BadRequestError, match="limit of 64") as info:
            _client(url).completions.create(model="stub", prompt="z", max_tokens=65)
        assert info.value.body["param"] == "max_tokens"  # type: ignore[index]


async def _echo_body_chat(request: Request) -> dict:
    """An upstream that answers with the JSON body it received."""
    body = await request.json()
    return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(body, sort_keys=True)}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def test_unknown_fields_pass_through_to_the_upstream(tmp_path: Path) -> None:
    with thread_server(fake_upstream(_echo_body_chat)) as upstream:
        config = parse_config({
            "server": {"state_dir": str(tmp_path)},
            "models": {"m": {"backend": "openai", "base_url": f"{upstream}/v1", "upstream_model": "up"}},
        })
        with thread_server(create_app(config)) as url:
            result = _client(url).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], logit_bias={"42": 5},
                extra_body={"repetition_penalty": 1.1}, user="u-1", seed=3,
            )
    sent = json.loads(result.choices[0].message.content or "{}")
    assert sent["model"] == "up"
    assert sent["logit_bias"] == {"42": 5} and sent["repetition_penalty"] == 1.1
    assert sent["user"] == "u-1" and sent["seed"] == 3


async def _echo_key_chat(request: Request) -> JSONResponse:
    """An upstream that rejects the request and echoes the credentials it was sent."""
    echoed = request.headers.get("authorization", "")
    return JSONResponse({"error": {"message": f"bad request from {echoed}"}}, status_code=400)


def test_upstream_key_never_leaks(tmp_path: Path) -> None:
    with thread_server(fake_upstream(_echo_key_chat)) as upstream:
        config = write_config(tmp_path / "c.yaml", {
            "server": {"state_dir": str(tmp_path / "state")},
            "models": {"m": {"backend": "openai", "base_url": f"{upstream}/v1", "api_key_env": "UPSTREAM_KEY"}},
        })
        with process_server(config, env={"UPSTREAM_KEY": SECRET}, extra_args=["--log-level", "debug"]) as (url, proc):
            with pytest.raises(openai.BadRequestError) as info:
                _client(url).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            assert SECRET not in str(info.value.body)
            assert "***" in str(info.value.body)
            assert SECRET not in httpx.get(f"{url}/metrics").text
            assert SECRET not in httpx.get(f"{url}/healthz").text
            assert SECRET not in process_output(proc)
