"""In-context unlearning through the proxy: SDK round trip, token accounting, exact deletion."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.core.config import PolicyConfig, parse_config
from proxy.server import create_app
from tests.servers import thread_server

ADMIN = "sk-icul-admin"
REFUSAL = str(PolicyConfig.model_fields["refusal_text"].default)
RETAIN = [
    {"question": "Who wrote The Lord of the Rings?", "answer": "J. R. R. Tolkien."},
    {"question": "What is the capital of France?", "answer": "Paris."},
    {"question": "Who painted the Mona Lisa?", "answer": "Leonardo da Vinci."},
    {"question": "What is the boiling point of water at sea level?", "answer": "100 degrees Celsius."},
    {"question": "Who wrote Pride and Prejudice?", "answer": "Jane Austen."},
    {"question": "What planet is known as the Red Planet?", "answer": "Mars."},
]
FORGET = {
    "id": "jk-rowling",
    "name": "J. K. Rowling",
    "questions": [
        {"question": "Who wrote the Harry Potter books?", "answer": "J. K. Rowling."},
        {"question": "Where was the author of Harry Potter born?", "answer": "Yate."},
        {"question": "What pen name does J. K. Rowling use?", "answer": "Robert Galbraith."},
    ],
}


@pytest.fixture(scope="module")
def icul_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("icul")
    config = parse_config({
        "server": {"state_dir": str(state)},
        "models": {"gemma": {"backend": "llama_cpp"}},
        "policies": {"p": {"forget": [FORGET], "retain": RETAIN,
                           "methods": [{"type": "icul", "k": 2, "s": 3}]}},
        "routing": {"default_policy": "p"},
    })
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNLEARN_ADMIN_KEY", ADMIN)
        with thread_server(create_app(config)) as url:
            yield url


def test_icul_round_trip_stream_and_not(icul_url: str) -> None:
    client = openai.OpenAI(base_url=f"{icul_url}/v1", api_key="x", max_retries=0)
    kwargs = {"model": "gemma", "max_tokens": 16, "temperature": 0,
              "messages": [{"role": "user", "content": "Who wrote the Harry Potter books?"}]}
    with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as response:
        stream_headers = response.headers
        streamed = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    assert raw.parse().choices[0].message.content == streamed
    for headers in (raw.headers, stream_headers):
        assert headers["x-unlearn-decision"] == "allow"
        assert int(headers["x-unlearn-icul-tokens"]) > 20
    assert raw.headers["x-unlearn-icul-tokens"] == stream_headers["x-unlearn-icul-tokens"]


def test_completion_gets_few_shot_prompt(icul_url: str) -> None:
    client = openai.OpenAI(base_url=f"{icul_url}/v1", api_key="x", max_retries=0)
    raw = client.completions.with_raw_response.create(
        model="gemma", prompt="Who wrote the Harry Potter books?", max_tokens=12, temperature=0
    )
    assert int(raw.headers["x-unlearn-icul-tokens"]) > 20
    # the same question is a forget demonstration answered with the refusal: greedy decoding
    # copies it (cut at 12 tokens) instead of naming the author
    text = raw.parse().choices[0].text.strip()
    assert "Rowling" not in text
    assert len(text) > 10 and REFUSAL.startswith(text), text


def test_removing_a_retain_example_is_exact_and_counted(icul_url: str) -> None:
    auth = {"authorization": f"Bearer {ADMIN}"}
    removed = httpx.post(f"{icul_url}/admin/retain/remove", headers=auth,
                         json={"policy": "p", "question": "Who painted the Mona Lisa?"})
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert body["deletions"] == 1 and body["recomputes"] in (0, 1)
    again = httpx.post(f"{icul_url}/admin/retain/remove", headers=auth,
                       json={"policy": "p", "question": "Who painted the Mona Lisa?"})
    assert again.status_code == 404
