"""Input guards read every text the model will see (issue 18, finding 6): forget content placed
in any role, a ``name``, a tool call or definition, a non-text content part, a structured-output
schema or a completion ``suffix`` is blocked before the upstream is called, while the same
placement holding a neighbour's question is answered.

Real server, real MiniLM embedding detector, the official SDK as client, the stub upstream as a
separate process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from proxy.core.config import parse_config
from proxy.server import create_app
from tests.policies import RETAIN, rowling_policy
from tests.servers import stub_upstream_process, thread_server

# A paraphrase of a forget question (no name, so only the embedding detector can catch it), a
# bare alias (only the alias matcher can) and a neighbour's question (must be answered).
PARAPHRASE = "In which town was the woman who wrote the Harry Potter novels born?"
ALIAS = "Robert Galbraith"
NEIGHBOUR = RETAIN[0]
Placement = Callable[[str], dict[str, Any]]


def _tool_call(text: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "search", "arguments": f'{{"query": "{text}"}}'}}
    return {"messages": [
        {"role": "user", "content": "Look this up for me."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "no results"},
        {"role": "user", "content": "Go on."},
    ]}


def _tool_definition(text: str) -> dict[str, Any]:
    function = {"name": "lookup", "description": text,
                "parameters": {"type": "object", "properties": {}}}
    return {"messages": [{"role": "user", "content": "Hello."}],
            "tools": [{"type": "function", "function": function}]}


def _schema(text: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "description": text}}}
    return {"messages": [{"role": "user", "content": "Answer in JSON."}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "reply", "schema": schema}}}


def _turns(*turns: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*turns, {"role": "user", "content": "Please continue."}]}


CHAT_PLACEMENTS: dict[str, Placement] = {
    "system": lambda t: _turns({"role": "system", "content": t}),
    "developer": lambda t: _turns({"role": "developer", "content": [{"type": "text", "text": t}]}),
    "assistant": lambda t: _turns({"role": "user", "content": "Hi."},
                                  {"role": "assistant", "content": t}),
    "tool-result": lambda t: _turns({"role": "tool", "tool_call_id": "c", "content": t}),
    "tool-call": _tool_call,
    "tool-definition": _tool_definition,
    "file-part": lambda t: {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What does this file say?"},
        {"type": "file", "file": {"filename": f"{t}.txt", "file_data": "ZGF0YQ=="}}]}]},
    "schema": _schema,
}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with stub_upstream_process() as upstream:
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("coverage"))},
            "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
            "policies": {"rowling": rowling_policy([{"type": "input_detector"}])},
            "routing": {"default_policy": "rowling"},
        })
        with thread_server(create_app(config)) as server:
            yield server


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def _decision(url: str, body: dict[str, Any]) -> str:
    raw = _client(url).chat.completions.with_raw_response.create(model="stub", **body)
    return raw.headers["x-unlearn-decision"]


@pytest.mark.parametrize("text", [PARAPHRASE, ALIAS], ids=["paraphrase", "alias"])
@pytest.mark.parametrize("placement", CHAT_PLACEMENTS)
def test_forget_content_anywhere_in_a_chat_is_blocked(url: str, placement: str, text: str) -> None:
    assert _decision(url, CHAT_PLACEMENTS[placement](text)) == "block"


@pytest.mark.parametrize("placement", CHAT_PLACEMENTS)
def test_a_neighbour_in_the_same_place_is_answered(url: str, placement: str) -> None:
    assert _decision(url, CHAT_PLACEMENTS[placement](NEIGHBOUR)) == "allow"


def test_a_name_field_is_read(url: str) -> None:
    turn = {"role": "user", "name": ALIAS.replace(" ", "_"), "content": "Tell me about myself."}
    assert _decision(url, {"messages": [turn]}) == "block"
    assert _decision(url, {"messages": [{**turn, "name": "Frodo"}]}) == "allow"


def test_an_ordinary_system_prompt_leaves_neighbours_answered(url: str) -> None:
    system = {"role": "system", "content": "You are a helpful assistant. Answer in one sentence "
              "and say so when you do not know."}
    for question in RETAIN:
        body = {"messages": [system, {"role": "user", "content": question}]}
        assert _decision(url, body) == "allow"


@pytest.mark.parametrize(("text", "decision"), [(PARAPHRASE, "block"), (ALIAS, "block"),
                                                (NEIGHBOUR, "allow")])
def test_a_completion_suffix_is_read(url: str, text: str, decision: str) -> None:
    raw = _client(url).completions.with_raw_response.create(
        model="stub", prompt="Fill in the middle: ", suffix=f" {text}", max_tokens=4)
    assert raw.headers["x-unlearn-decision"] == decision
