"""``speculate: true``: the upstream call starts while the input guards run.

A real second server process is the upstream; a slow in-test upstream only observes that a
blocked request's call is cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.core.config import parse_config
from proxy.core.errors import ConfigError
from proxy.server import create_app
from tests.policies import RETAIN, ROWLING
from tests.servers import (
    SlowUpstream, fake_upstream, free_port, process_server, thread_server, write_config,
)

GREEDY = {"temperature": 0.0, "max_tokens": 16}
REFUSAL = "I'm sorry, but I can't help with that."
SLOW_S = 5.0
# a forget question at the end of a long prompt: the detector embeds several windows of it, so
# the upstream call is under way (on loopback it connects in about a millisecond) before the block
BURIED_QUESTION = " ".join(
    f"Paragraph {i} of my notes is about rivers, weather and the price of bread." for i in range(40)
) + " Anyway: which writer created the boy wizard Harry Potter?"


@pytest.fixture(scope="module")
def slow() -> SlowUpstream:
    return SlowUpstream(SLOW_S)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, slow: SlowUpstream) -> Iterator[tuple[str, str]]:
    """(speculating proxy, the upstream process it forwards to)."""
    root = tmp_path_factory.mktemp("speculation")
    upstream_config = write_config(root / "upstream.yaml", {
        "server": {"state_dir": str(root / "upstream-state")},
        "models": {"gemma": {"backend": "llama_cpp"}},
    })
    policy = {"forget": [ROWLING], "retain": RETAIN, "speculate": True,
              "methods": [{"type": "input_detector"}, {"type": "output_filter"}]}
    with process_server(upstream_config) as (upstream, _), thread_server(fake_upstream(slow.chat)) as slow_url:
        config = parse_config({
            "server": {"state_dir": str(root / "state")},
            "models": {
                "gemma": {"backend": "openai", "base_url": f"{upstream}/v1"},
                "slow": {"backend": "openai", "base_url": f"{slow_url}/v1", "read_timeout_s": 30},
                "down": {"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                         "connect_timeout_s": 1},
            },
            "policies": {"rowling": policy},
            "routing": {"default_policy": "rowling"},
        })
        with thread_server(create_app(config)) as url:
            yield url, upstream


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def _ask(url: str, question: str, *, stream: bool, model: str = "gemma") -> tuple[str, str | None]:
    messages = [{"role": "user", "content": question}]
    client = _client(url)
    if not stream:
        result = client.chat.completions.create(model=model, messages=messages, **GREEDY)
        return result.choices[0].message.content or "", result.choices[0].finish_reason
    chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)


def _speculations(url: str, outcome: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("unlearn_speculations_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_an_allowed_request_gets_the_upstream_answer(front: tuple[str, str], stream: bool) -> None:
    url, upstream = front
    used = _speculations(url, "used")
    question = "What is the capital of France?"
    direct = _ask(upstream, question, stream=False)
    assert _ask(url, question, stream=stream) == direct
    assert "Paris" in direct[0]
    assert _speculations(url, "used") == used + 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_blocked_request_is_refused_and_its_upstream_call_cancelled(
    front: tuple[str, str], slow: SlowUpstream, stream: bool
) -> None:
    url, _ = front
    cancelled, started, finished = _speculations(url, "cancelled"), slow.started, slow.finished
    question = f"Notes ({'stream' if stream else 'plain'}): {BURIED_QUESTION}"  # no cache hit
    answer = _ask(url, question, stream=stream, model="slow")
    assert answer == (REFUSAL, "content_filter")
    assert slow.finished == finished  # refused while the upstream call was still running
    assert slow.started == started + 1
    assert slow.abandoned.acquire(timeout=SLOW_S / 2), "the upstream call was not cancelled"
    assert _speculations(url, "cancelled") == cancelled + 1


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_is_down_is_a_clean_502(front: tuple[str, str], stream: bool) -> None:
    url, _ = front
    with pytest.raises(openai.InternalServerError) as info:
        _ask(url, "What is the capital of France?", stream=stream, model="down")
    assert info.value.status_code == 502


def test_speculation_with_a_rewriting_method_is_a_config_error() -> None:
    policy = {"forget": [ROWLING], "speculate": True,
              "methods": [{"type": "input_detector"}, {"type": "prefix"}]}
    with pytest.raises(ConfigError, match="speculate: true needs a policy whose methods do not rewrite"):
        parse_config({"models": {"m": {"backend": "llama_cpp"}}, "policies": {"p": policy}})
