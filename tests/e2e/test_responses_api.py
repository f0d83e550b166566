"""``POST /v1/responses`` (issue 15): OpenAI's Responses API through the chat lifecycle.

The official SDK's ``client.responses.create`` (streamed and not) and its ``responses.stream``
helper are the clients, against the real server in front of a real upstream process
(``benchmarks.stub_upstream --rich --echo``) and the embedded Gemma. The upstream receives the
chat request the Responses request translates into; text and function-call outputs come back
as Responses items and typed events; the Rowling policy blocks the same way as on the chat
route; what needs stored state is a clear 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from proxy.core.config import PolicyConfig, parse_config
from proxy.server import create_app
from tests.conftest import CLIENT_KEY
from tests.policies import FORBIDDEN, rowling_policy
from tests.servers import stub_upstream_process, thread_server

REFUSAL = PolicyConfig.model_fields["refusal_text"].default
LEAK = "Joanne Rowling was born in Yate, Gloucestershire."
ALLOWED = "Paris is the capital of France, and Lyon is its third city."
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "days": {"type": "integer"}},
                          "required": ["city", "days"]}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with stub_upstream_process("--rich", "--echo") as upstream:
        base = {"backend": "openai", "base_url": f"{upstream}/v1"}
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("responses"))},
            "models": {"plain": base, "guarded": base, "screened": base},
            "policies": {"rowling": rowling_policy([{"type": "output_filter"}]),
                         "screen": rowling_policy([{"type": "input_detector"}])},
            "routing": {"models": {"guarded": "rowling", "screened": "screen"}},
        })
        with thread_server(create_app(config)) as url:
            yield url, upstream


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def _last_request(upstream: str) -> dict[str, Any]:
    return dict(httpx.get(f"{upstream}/last-request", timeout=10).json())


def test_a_text_response_and_the_chat_request_behind_it(servers: tuple[str, str]) -> None:
    url, upstream = servers
    response = _client(url).responses.create(
        model="plain", input="Tell me about the sea.", instructions="Be brief.",
        max_output_tokens=50, temperature=0.2, metadata={"team": "forget"})
    assert response.output_text == "Tell me about the sea."
    assert (response.status, response.model, response.id[:5]) == ("completed", "plain", "resp_")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.input_tokens == 8
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert (response.instructions, response.max_output_tokens, response.metadata) == (
        "Be brief.", 50, {"team": "forget"})
    sent = _last_request(upstream)
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Tell me about the sea."}]
    assert (sent["max_completion_tokens"], sent["temperature"], sent["metadata"]) == (
        50, 0.2, {"team": "forget"})


def test_a_streamed_response_has_openais_typed_events(servers: tuple[str, str]) -> None:
    client, text = _client(servers[0]), "The harbour, the boats and the gulls."
    events = list(client.responses.create(model="plain", input=text, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    final = events[-1].response
    assert final.output_text == text and final.usage.output_tokens > 0
    with client.responses.stream(model="plain", input=text) as stream:
        assert stream.get_final_response().output_text == text


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_their_results(servers: tuple[str, str], stream: bool) -> None:
    url, upstream = servers
    client, text = _client(url), "Weather in Oslo"
    if stream:
        with client.responses.stream(model="plain", input=text, tools=[WEATHER]) as events:
            deltas = "".join(e.delta for e in events
                             if e.type == "response.function_call_arguments.delta")
            response = events.get_final_response()
        assert deltas == response.output[0].arguments
    else:
        response = client.responses.create(model="plain", input=text, tools=[WEATHER])
    call = response.output[0]
    assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
    assert json.loads(call.arguments) == {"city": text, "days": len(text)}
    sent = _last_request(upstream)
    assert sent["tools"] == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters")}}]
    # the result goes back as input items; the upstream gets the chat turns
    follow = client.responses.create(model="plain", tools=[WEATHER], input=[
        {"role": "user", "content": text},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        {"role": "user", "content": [{"type": "input_text", "text": "Summarise it."}]},
    ], tool_choice="none")
    assert follow.output_text == "Summarise it."
    assert _last_request(upstream)["messages"][1:3] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.call_id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 C"}]


# ---------------------------------------------------------------------------- under a policy


def _answer(url: str, model: str, stream: bool, **kwargs: Any) -> tuple[str, Any, str]:
    """(the decision header, the final response, everything the client received)."""
    raw = _client(url).responses.with_raw_response.create(model=model, stream=stream, **kwargs)
    decision = raw.http_response.headers["x-unlearn-decision"]
    if not stream:
        return decision, raw.parse(), raw.http_response.text
    events = list(raw.parse())
    return decision, events[-1].response, json.dumps([e.to_dict() for e in events])


@pytest.mark.parametrize("stream", [False, True])
def test_a_leak_is_blocked_as_on_the_chat_route(servers: tuple[str, str], stream: bool) -> None:
    decision, response, received = _answer(servers[0], "guarded", stream, input=LEAK)
    # a stream's headers go out with its first event, before the output guards decided
    assert decision == ("allow" if stream else "block")
    assert response.output_text == REFUSAL
    assert (response.status, response.incomplete_details.reason) == ("incomplete",
                                                                     "content_filter")
    assert not [word for word in FORBIDDEN if word in received.lower()], received
    decision, response, _ = _answer(servers[0], "guarded", stream, input=ALLOWED)
    assert (decision, response.output_text, response.status) == ("allow", ALLOWED, "completed")


@pytest.mark.parametrize("stream", [False, True])
def test_a_leak_in_function_call_arguments_is_blocked(
    servers: tuple[str, str], stream: bool
) -> None:
    decision, response, received = _answer(servers[0], "guarded", stream, input=LEAK,
                                           tools=[WEATHER])
    assert (decision, response.output_text) == ("block", REFUSAL)
    assert not [word for word in FORBIDDEN if word in received.lower()], received


@pytest.mark.parametrize("stream", [False, True])
def test_a_target_in_a_function_result_is_blocked(servers: tuple[str, str], stream: bool) -> None:
    turns = [{"role": "user", "content": "Summarise the note."},
             {"type": "function_call", "call_id": "c1", "name": "get_weather",
              "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1",
              "output": "Who wrote the Harry Potter books, and where was she born?"}]
    decision, response, _ = _answer(servers[0], "screened", stream, input=turns)
    assert (decision, response.output_text) == ("block", REFUSAL)


# ---------------------------------------------------------------------------- unsupported


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"background": True}, "background"),
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"tools": [{"type": "web_search"}]}, "tools.0"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
])
def test_what_needs_stored_state_or_builtin_tools_is_a_clear_400(
    servers: tuple[str, str], kwargs: dict[str, Any], param: str
) -> None:
    arguments = {"model": "plain", "input": "hi", **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        _client(servers[0]).responses.create(**arguments)
    assert (info.value.body["type"], info.value.body["param"]) == (  # type: ignore[index]
        "invalid_request_error", param)


def test_stored_responses_are_a_400_not_a_404(servers: tuple[str, str]) -> None:
    client = _client(servers[0])
    for call in (lambda: client.responses.retrieve("resp_123"),
                 lambda: client.responses.delete("resp_123"),
                 lambda: client.responses.input_items.list("resp_123")):
        with pytest.raises(openai.BadRequestError) as info:
            call()
        assert "stored responses are not supported" in info.value.body["message"]  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_the_embedded_model_answers_responses(llama_url: str, stream: bool) -> None:
    client = _client(llama_url, CLIENT_KEY)
    answer = client.responses.create(model="gemma", input="The capital of France is",
                                     max_output_tokens=8, temperature=0, stream=stream)
    if stream:
        events = list(answer)  # type: ignore[arg-type]
        last, response = events[-1].type, events[-1].response
        assert last == f"response.{response.status}"  # completed, or incomplete at the limit
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == response.output_text
    else:
        response = answer  # type: ignore[assignment]
    assert response.output_text.strip() and response.usage.output_tokens > 0
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
