"""Tool calling and ``n > 1`` through the proxy (issue 15): passed through unchanged without a
guard, read and held back by the output guards under a policy.

The official ``openai`` SDK (and ``langchain-openai``) is the client, against the real server
and ``openai`` backend in front of a real upstream process (``benchmarks.stub_upstream --rich
--echo``), which answers ``tools``, legacy ``functions`` and ``n`` as a model server does
(:mod:`benchmarks.stub_answers`): each tool called with arguments that fit its schema and carry
the request's text, streamed one character per event; with ``n``, the text split on `` || ``
gives each choice its own. Under the Rowling policy, a leak in tool-call arguments is blocked in
a stream before any of it is out, and the stream and the plain answer get the same decision;
an escaped non-ASCII name (``\\u00eb``) is read as the name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from benchmarks.stub_answers import CHOICE_SEPARATOR, rich_reply, rich_stream
from proxy.core.config import PolicyConfig, parse_config
from proxy.server import create_app
from tests.conftest import CLIENT_KEY
from tests.policies import FORBIDDEN, rowling_policy
from tests.servers import stub_upstream_process, thread_server

OWN = ("id", "created", "model")
REFUSAL = PolicyConfig.model_fields["refusal_text"].default
LEAK = "Joanne Rowling was born in Yate, Gloucestershire."
ALLOWED = "Paris is the capital of France, and Lyon is its third city."
ZOE = {"id": "zoe", "name": "Zoë Brontëau", "aliases": [],
       "documents": ["Zoë Brontëau is an invented painter of harbour scenes."]}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}
NOTE = {"type": "function", "function": {
    "name": "save_note", "description": "Save a note.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"]}}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the proxy's URL, the upstream process's URL)."""
    with stub_upstream_process("--rich", "--echo") as upstream:
        base = {"backend": "openai", "base_url": f"{upstream}/v1"}
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("tools"))},
            "models": {"plain": base, "guarded": base, "zoe": base, "screened": base},
            "policies": {
                "rowling": rowling_policy([{"type": "output_filter"}]),
                "zoe": {"forget": [ZOE], "methods": [{"type": "output_filter"}]},
                "screen": rowling_policy([{"type": "input_detector"}]),
            },
            "routing": {"models": {"guarded": "rowling", "zoe": "zoe", "screened": "screen"}},
        })
        with thread_server(create_app(config)) as url:
            yield url, upstream


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def _last_request(upstream: str) -> dict[str, Any]:
    return dict(httpx.get(f"{upstream}/last-request", timeout=10).json())


def _without_own(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in OWN}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _streamed_calls(chunks: list[dict[str, Any]], index: int = 0) -> dict[int, dict[str, str]]:
    """The tool calls a client accumulates from stream chunks, by tool-call index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["index"] != index:
                continue
            for call in choice["delta"].get("tool_calls") or []:
                got = calls.setdefault(call["index"], {"name": "", "arguments": ""})
                function = call.get("function") or {}
                got["name"] += function.get("name") or ""
                got["arguments"] += function.get("arguments") or ""
    return calls


# ---------------------------------------------------------------------------- passthrough


@pytest.mark.parametrize("tools", [[WEATHER], [WEATHER, NOTE]])
def test_tool_calls_arrive_as_the_upstream_sent_them(
    servers: tuple[str, str], tools: list[dict[str, Any]]
) -> None:
    url, upstream = servers
    client, text = _client(url), "Weather in Paris"
    raw = client.chat.completions.with_raw_response.create(
        model="plain", messages=_user(text), tools=tools, tool_choice="auto")
    sent = _last_request(upstream)
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert _without_own(raw.http_response.json()) == _without_own(rich_reply(sent, True, text))
    message = raw.parse().choices[0].message
    assert [c.function.name for c in message.tool_calls] == [t["function"]["name"] for t in tools]
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": text,
                                                                     "days": len(text)}
    assert message.content is None and raw.parse().choices[0].finish_reason == "tool_calls"

    chunks = [c.to_dict() for c in client.chat.completions.create(
        model="plain", messages=_user(text), tools=tools, tool_choice="auto", stream=True,
        stream_options={"include_usage": True})]
    assert [_without_own(c) for c in chunks] == [
        _without_own(e) for e in rich_stream(_last_request(upstream), True, text)]
    with client.chat.completions.stream(model="plain", messages=_user(text),
                                        tools=tools) as stream:
        final = stream.get_final_completion()
    def fields(call: Any) -> tuple[str, str, str, str]:
        return call.id, call.type, call.function.name, call.function.arguments

    assert [fields(c) for c in final.choices[0].message.tool_calls] == [
        fields(c) for c in message.tool_calls]


def test_parallel_tool_calls_false_and_a_named_tool_choice(servers: tuple[str, str]) -> None:
    client = _client(servers[0])
    one = client.chat.completions.create(model="plain", messages=_user("hi"),
                                         tools=[WEATHER, NOTE], parallel_tool_calls=False)
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]
    named = client.chat.completions.create(
        model="plain", messages=_user("hi"), tools=[WEATHER, NOTE],
        tool_choice={"type": "function", "function": {"name": "save_note"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["save_note"]


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_function_call(servers: tuple[str, str], stream: bool) -> None:
    url, upstream = servers
    functions = [NOTE["function"]]
    answer = _client(url).chat.completions.create(
        model="plain", messages=_user("remember milk"), functions=functions, stream=stream)
    expected = rich_reply(_last_request(upstream), True, "remember milk")["choices"][0]
    if stream:
        chunks = [c.to_dict() for c in answer]  # type: ignore[union-attr]
        arguments = "".join((c["choices"][0]["delta"].get("function_call") or {}).get(
            "arguments", "") for c in chunks if c["choices"])
        assert arguments == expected["message"]["function_call"]["arguments"]
        assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    else:
        call = answer.choices[0].message.function_call  # type: ignore[union-attr]
        assert call.model_dump() == expected["message"]["function_call"]


class Weather(BaseModel):
    city: str
    days: int


def test_the_sdks_pydantic_tools_parse(servers: tuple[str, str]) -> None:
    result = _client(servers[0]).chat.completions.parse(
        model="plain", messages=_user("Oslo"), tools=[openai.pydantic_function_tool(Weather)])
    assert result.choices[0].message.tool_calls[0].function.parsed_arguments == Weather(
        city="Oslo", days=4)


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_arrive_as_the_upstream_sent_them(servers: tuple[str, str], stream: bool) -> None:
    url, upstream = servers
    text = f"the sea{CHOICE_SEPARATOR}the hills{CHOICE_SEPARATOR}the town"
    usage = {"stream_options": {"include_usage": True}} if stream else {}
    answer = _client(url).chat.completions.with_raw_response.create(
        model="plain", messages=_user(text), n=3, logprobs=True, top_logprobs=2, stream=stream,
        **usage)
    sent = _last_request(upstream)
    assert sent["n"] == 3
    if stream:
        chunks = [c.to_dict() for c in answer.parse()]
        assert [_without_own(c) for c in chunks] == [
            _without_own(e) for e in rich_stream(sent, True, text)]
    else:
        body = answer.http_response.json()
        assert _without_own(body) == _without_own(rich_reply(sent, True, text))
        assert [c["message"]["content"] for c in body["choices"]] == [
            "the sea", "the hills", "the town"]


# ---------------------------------------------------------------------------- langchain


def test_langchain_bind_tools_and_structured_output(servers: tuple[str, str]) -> None:
    model = ChatOpenAI(model="plain", base_url=f"{servers[0]}/v1", api_key="unused",
                       max_retries=0, timeout=60)
    reply = model.bind_tools([Weather]).invoke("What is the weather in Rome?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("Weather", {"city": "What is the weather in Rome?", "days": 28})]
    parsed = model.with_structured_output(Weather, method="function_calling").invoke("Lima")
    assert parsed == Weather(city="Lima", days=4)
    streamed = list(model.bind_tools([Weather]).stream("Kyiv"))
    total = streamed[0]
    for part in streamed[1:]:
        total += part
    assert total.tool_calls[0]["args"] == {"city": "Kyiv", "days": 4}


# ---------------------------------------------------------------------------- under a policy


def _decide(url: str, model: str, messages: list[dict[str, Any]], stream: bool,
            **kwargs: Any) -> tuple[str, list[dict[str, Any]], str]:
    """(the decision header, the choices as a client assembles them, the raw body) of one
    request, streamed or not: each choice's content, tool calls and finish reason."""
    raw = _client(url).chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream, **kwargs)
    decision = raw.http_response.headers["x-unlearn-decision"]
    if not stream:
        body = raw.http_response.json()
        choices = [{"index": c["index"], "content": c["message"]["content"],
                    "tool_calls": {i: {"name": t["function"]["name"],
                                       "arguments": t["function"]["arguments"]}
                                   for i, t in enumerate(c["message"].get("tool_calls") or [])},
                    "finish_reason": c["finish_reason"]} for c in body["choices"]]
        return decision, choices, json.dumps(body)
    chunks = [c.to_dict() for c in raw.parse()]
    indices = sorted({ch["index"] for c in chunks for ch in c["choices"]})
    choices = []
    for index in indices:
        own = [ch for c in chunks for ch in c["choices"] if ch["index"] == index]
        content = "".join(ch["delta"].get("content") or "" for ch in own)
        choices.append({"index": index, "content": content or None,
                        "tool_calls": _streamed_calls(chunks, index),
                        "finish_reason": own[-1]["finish_reason"]})
    return decision, choices, json.dumps(chunks)


def _no_forbidden(dumped: str) -> None:
    found = [word for word in FORBIDDEN if word in dumped.lower()]
    assert not found, dumped


def test_a_leak_in_tool_call_arguments_is_blocked_before_any_of_it_is_out(
    servers: tuple[str, str]
) -> None:
    """The upstream streams the arguments one character per event; the client gets the
    refusal, never a character of the name, in the stream as in the plain answer."""
    url = servers[0]
    results = {stream: _decide(url, "guarded", _user(LEAK), stream, tools=[NOTE])
               for stream in (False, True)}
    for decision, choices, dumped in results.values():
        assert decision == "block"
        assert [(c["content"], c["finish_reason"]) for c in choices] == [
            (REFUSAL, "content_filter")]
        _no_forbidden(dumped)
    # a stream may have released the settled start of the call (its name), never the leak
    streamed = results[True][1][0]["tool_calls"]
    assert all(call["name"] in ("", "save_note") for call in streamed.values())


@pytest.mark.parametrize("stream", [False, True])
def test_an_allowed_tool_call_passes_the_guards_whole(
    servers: tuple[str, str], stream: bool
) -> None:
    url, upstream = servers
    decision, choices, _ = _decide(url, "guarded", _user(ALLOWED), stream,
                                   tools=[WEATHER, NOTE])
    expected = rich_reply(_last_request(upstream), True, ALLOWED)["choices"][0]["message"]
    assert decision == "allow"
    assert choices[0]["tool_calls"] == {
        i: {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for i, c in enumerate(expected["tool_calls"])}
    assert choices[0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_an_escaped_name_in_arguments_is_read_as_the_name(
    servers: tuple[str, str], stream: bool
) -> None:
    url, upstream = servers
    text = "A note on Zoë Brontëau and her harbours."
    plain = _client(url).chat.completions.with_raw_response.create(
        model="plain", messages=_user(text), tools=[NOTE])
    assert "Zo\\\\u00eb Bront\\\\u00ebau" in plain.http_response.text  # sent escaped
    decision, choices, dumped = _decide(url, "zoe", _user(text), stream, tools=[NOTE])
    assert (decision, choices[0]["finish_reason"]) == ("block", "content_filter")
    assert "bront" not in dumped.lower()


@pytest.mark.parametrize("stream", [False, True])
def test_each_of_n_choices_is_checked_on_its_own(servers: tuple[str, str], stream: bool) -> None:
    decision, choices, dumped = _decide(
        servers[0], "guarded", _user(f"{ALLOWED}{CHOICE_SEPARATOR}{LEAK}"), stream, n=2,
        logprobs=True)
    # a stream's headers go with its first chunk, released (choice 0) before choice 1 ended
    assert decision == ("allow" if stream else "block")
    assert [(c["index"], c["content"], c["finish_reason"]) for c in choices] == [
        (0, ALLOWED, "stop"), (1, REFUSAL, "content_filter")]
    _no_forbidden(dumped)


def _tool_turns(result: str) -> list[dict[str, Any]]:
    """A conversation where a tool returned ``result`` for the model to read."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "save_note", "arguments": '{"text": "look it up"}'}}
    return [{"role": "user", "content": "Look up the note and summarise it."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_target_smuggled_through_a_tool_result_is_blocked(
    servers: tuple[str, str], stream: bool
) -> None:
    url = servers[0]
    smuggled = "Note: who wrote the Harry Potter books, and where was she born?"
    decision, choices, _ = _decide(url, "screened", _tool_turns(smuggled), stream, n=2,
                                   tools=[NOTE])
    assert decision == "block"
    assert [(c["index"], c["content"]) for c in choices] == [(0, REFUSAL), (1, REFUSAL)]
    decision, choices, _ = _decide(url, "screened", _tool_turns("Milk, eggs and bread."),
                                   stream, tools=[NOTE])
    assert decision == "allow" and choices[0]["finish_reason"] == "tool_calls"


# ---------------------------------------------------------------------------- embedded engines


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("kwargs", "param"), [
    ({"tools": [WEATHER]}, "tools"),
    ({"functions": [NOTE["function"]]}, "functions"),
    ({"n": 2}, "n"),
])
def test_an_embedded_engine_refuses_tools_and_n(
    llama_url: str, kwargs: dict[str, Any], param: str, stream: bool
) -> None:
    client = openai.OpenAI(base_url=f"{llama_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:  # a stream's comes before any byte
        client.chat.completions.create(model="gemma", messages=_user("Hi"), max_tokens=2,
                                       stream=stream, **kwargs)
    body = info.value.body
    assert (body["type"], body["param"]) == ("invalid_request_error", param)  # type: ignore[index]
