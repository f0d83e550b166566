"""Passthrough (issue 15): what a client sends reaches an OpenAI-compatible upstream unchanged,
and what the upstream answers reaches the client unchanged unless a guard replaces it.

The official ``openai`` SDK is the client, against the real server and ``openai`` backend in
front of a real upstream process (``benchmarks.stub_upstream --rich --echo``): it answers each
request's own text with what OpenAI's answers carry besides it (``system_fingerprint``,
``service_tier``, usage details, per-token logprobs with alternatives) and an unknown
``x_stub`` field at every level, and ``GET /last-request`` gives back the body it received. The
proxy writes only its own ``id``, ``created`` and the ``model`` name the client asked for.
With the Rowling policy's output filter, a blocked answer is the refusal with the metadata and
no logprobs, and an allowed one passes only what the guards read. Embedded engines refuse
``logprobs`` with a 400. A property test (an in-test upstream, random answers with random
fields and unicode text) checks that the client receives what the upstream sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.stub_answers import FINGERPRINT, UNKNOWN, rich_answer, rich_events, tokens_of
from proxy.core.config import PolicyConfig, parse_config
from proxy.server import create_app
from tests.conftest import CLIENT_KEY
from tests.policies import FORBIDDEN, rowling_policy
from tests.servers import fake_upstream, stub_upstream_process, thread_server

OWN = ("id", "created", "model")  # what the proxy writes itself
REFUSAL = PolicyConfig.model_fields["refusal_text"].default
LEAK = "Joanne Rowling was born in Yate, Gloucestershire."
ALLOWED = "Paris is the capital of France, and Lyon is its third city."
FUTURE = {"x_future_option": {"mode": "new", "levels": [1, 2]}}  # a field no SDK knows yet
CHAT_FIELDS: dict[str, Any] = {
    "max_completion_tokens": 40, "temperature": 0.3, "top_p": 0.9, "seed": 7, "stop": "\n\n",
    "user": "user-1", "metadata": {"team": "forget"}, "store": False, "reasoning_effort": "low",
    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "answer", "schema": {"type": "object"}}},
    "logprobs": True, "top_logprobs": 2, "frequency_penalty": 0.1, "logit_bias": {"1234": -5},
    "service_tier": "auto", "n": 1,
}
COMPLETION_FIELDS: dict[str, Any] = {
    "temperature": 0.0, "seed": 3, "stop": ["\n"], "user": "user-2", "logprobs": 2,
    "echo": False, "presence_penalty": 0.2, "best_of": 1, "suffix": " (end)",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the proxy's URL, the rich upstream process's URL)."""
    with stub_upstream_process("--rich", "--echo") as upstream:
        base = {"backend": "openai", "base_url": f"{upstream}/v1"}
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("passthrough")),
                       "max_tokens_limit": 4096},
            "models": {"plain": base, "capped": {**base, "max_tokens_default": 64},
                       "guarded": base},
            "policies": {"rowling": rowling_policy([{"type": "output_filter"}])},
            "routing": {"models": {"guarded": "rowling"}},
        })
        with thread_server(create_app(config)) as url:
            yield url, upstream


class _Recorder:
    """An SDK client whose HTTP client records the bodies the SDK sent."""

    def __init__(self, url: str) -> None:
        self.sent: list[dict[str, Any]] = []
        http = httpx.Client(timeout=60, event_hooks={"request": [self._record]})
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                    http_client=http)

    def _record(self, request: httpx.Request) -> None:
        self.sent.append(json.loads(request.read()))


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def _last_request(upstream: str) -> dict[str, Any]:
    return dict(httpx.get(f"{upstream}/last-request", timeout=10).json())


def _without_own(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in OWN}


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("stream", [False, True])
def test_chat_request_fields_arrive_unchanged(servers: tuple[str, str], stream: bool) -> None:
    url, upstream = servers
    recorder = _Recorder(url)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello.", "name": "ann"}]
    answer = recorder.client.chat.completions.create(
        model="plain", messages=messages, stream=stream, extra_body=FUTURE, **CHAT_FIELDS)
    if stream:
        list(answer)  # type: ignore[arg-type]
    got = _last_request(upstream)
    assert got == recorder.sent[-1]  # every field, as the SDK sent it
    assert got["max_completion_tokens"] == 40 and "max_tokens" not in got
    assert got["stop"] == "\n\n" and got["x_future_option"] == FUTURE["x_future_option"]
    assert "stream_options" not in got  # nothing added for a stream either


@pytest.mark.parametrize("stream", [False, True])
def test_completion_request_fields_arrive_unchanged(servers: tuple[str, str], stream: bool) -> None:
    url, upstream = servers
    recorder = _Recorder(url)
    answer = recorder.client.completions.create(
        model="plain", prompt="The sea is", stream=stream, extra_body=FUTURE, **COMPLETION_FIELDS)
    if stream:
        list(answer)  # type: ignore[arg-type]
    got = _last_request(upstream)
    assert got == recorder.sent[-1]
    assert "max_tokens" not in got


def test_no_max_tokens_is_added_unless_the_model_config_sets_one(servers: tuple[str, str]) -> None:
    url, upstream = servers
    client, messages = _client(url), [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="plain", messages=messages)  # type: ignore[arg-type]
    assert not {"max_tokens", "max_completion_tokens"} & set(_last_request(upstream))
    client.chat.completions.create(model="capped", messages=messages)  # type: ignore[arg-type]
    assert _last_request(upstream)["max_tokens"] == 64  # the operator's max_tokens_default
    client.chat.completions.create(
        model="capped", messages=messages, max_completion_tokens=9)  # type: ignore[arg-type]
    got = _last_request(upstream)
    assert got["max_completion_tokens"] == 9 and "max_tokens" not in got


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_server_limit_applies_to_either_field(servers: tuple[str, str], field: str) -> None:
    url, _ = servers
    with pytest.raises(openai.BadRequestError) as info:
        _client(url).chat.completions.create(
            model="plain", messages=[{"role": "user", "content": "hi"}], **{field: 5000})
    assert info.value.body["param"] == field  # type: ignore[index]
    assert "4096" in info.value.body["message"]  # type: ignore[index]


# ---------------------------------------------------------------------------- responses


def _create(client: openai.OpenAI, kind: str, model: str, text: str, **kwargs: Any) -> Any:
    if kind == "chat":
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], **kwargs)
    return client.completions.create(model=model, prompt=text, **kwargs)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_response_fields_arrive_unchanged(servers: tuple[str, str], kind: str) -> None:
    url, _ = servers
    text = "Tell me about the sea, the harbour and the boats."
    raw = _create(_client(url).with_raw_response, kind, "plain", text)  # type: ignore[arg-type]
    body = raw.http_response.json()
    upstream = rich_answer(tokens_of(text), kind == "chat", "stop")
    assert _without_own(body) == _without_own(upstream)
    # the proxy's keys first, in OpenAI's order, then the upstream's own in its order
    assert list(body) == ["id", "object", "created", "model", "choices", "usage",
                          "service_tier", "system_fingerprint", "x_stub"]
    result = raw.parse()  # what an application reads
    assert (result.system_fingerprint, result.service_tier) == (
        FINGERPRINT["system_fingerprint"], FINGERPRINT["service_tier"])
    assert result.usage.prompt_tokens_details.cached_tokens == 4
    assert result.usage.completion_tokens_details.reasoning_tokens == 2
    assert result.model_extra["x_stub"] == UNKNOWN["x_stub"]
    choice = result.choices[0]
    assert choice.model_extra["x_stub"] == UNKNOWN["x_stub"]
    if kind == "chat":
        assert [t.token for t in choice.logprobs.content] == tokens_of(text)
        assert choice.logprobs.content[0].top_logprobs[1].token == "ALT"
        assert choice.message.model_extra["x_stub"] == UNKNOWN["x_stub"]
    else:
        assert choice.logprobs.tokens == tokens_of(text)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_streamed_response_fields_arrive_unchanged(servers: tuple[str, str], kind: str) -> None:
    url, _ = servers
    text = "Tell me about the sea, the harbour and the boats."
    stream = _create(_client(url), kind, "plain", text, stream=True,
                     stream_options={"include_usage": True})
    chunks = [chunk.to_dict() for chunk in stream]
    upstream = rich_events(tokens_of(text), kind == "chat", "stop")
    # without a guard, one event per upstream event, each as the upstream sent it
    assert [_without_own(c) for c in chunks] == [_without_own(e) for e in upstream]
    assert len({c["id"] for c in chunks}) == 1


# ---------------------------------------------------------------------------- under a policy


def _blocked_or_allowed(servers: tuple[str, str], kind: str, text: str, stream: bool) -> Any:
    kwargs: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} \
        if stream else {}
    kwargs.update({"logprobs": True, "top_logprobs": 2} if kind == "chat" else {"logprobs": 2})
    return _create(_client(servers[0]), kind, "guarded", text, **kwargs)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_a_blocked_answer_has_the_refusal_and_no_logprobs(
    servers: tuple[str, str], kind: str
) -> None:
    result = _blocked_or_allowed(servers, kind, LEAK, stream=False)
    choice = result.choices[0]
    text = choice.message.content if kind == "chat" else choice.text
    assert (text, choice.finish_reason, choice.logprobs) == (REFUSAL, "content_filter", None)
    # the metadata stays: fingerprint, tier, usage details, unknown answer and choice fields
    assert result.system_fingerprint == FINGERPRINT["system_fingerprint"]
    assert result.service_tier == FINGERPRINT["service_tier"]
    assert result.usage.prompt_tokens_details.cached_tokens == 4
    assert result.model_extra["x_stub"] == choice.model_extra["x_stub"] == UNKNOWN["x_stub"]
    if kind == "chat":  # the message is the refusal alone
        assert result.choices[0].message.to_dict() == {
            "role": "assistant", "content": REFUSAL, "refusal": None}
    dumped = json.dumps(result.to_dict()).lower()
    assert not [word for word in FORBIDDEN if word in dumped], dumped


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_a_blocked_stream_has_the_refusal_and_no_logprobs(
    servers: tuple[str, str], kind: str
) -> None:
    chunks = [c.to_dict() for c in _blocked_or_allowed(servers, kind, LEAK, stream=True)]
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    texts = [(ch["delta"].get("content") if kind == "chat" else ch["text"]) or "" for ch in choices]
    assert "".join(texts) == REFUSAL
    assert choices[-1]["finish_reason"] == "content_filter"
    assert all(ch["logprobs"] is None for ch in choices), choices
    assert all(c["system_fingerprint"] == FINGERPRINT["system_fingerprint"]
               for c in chunks if c["choices"])
    dumped = json.dumps(chunks).lower()
    assert not [word for word in FORBIDDEN if word in dumped], dumped


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_an_allowed_answer_under_output_guards_passes_what_they_read(
    servers: tuple[str, str], kind: str
) -> None:
    """The text and its tokens' logprobs pass with the metadata; the alternatives and the
    message's own fields (text no guard read) do not."""
    result = _blocked_or_allowed(servers, kind, ALLOWED, stream=False)
    choice = result.choices[0]
    assert (choice.message.content if kind == "chat" else choice.text) == ALLOWED
    assert result.system_fingerprint == FINGERPRINT["system_fingerprint"]
    assert choice.model_extra["x_stub"] == UNKNOWN["x_stub"]
    if kind == "chat":
        assert [t.token for t in choice.logprobs.content] == tokens_of(ALLOWED)
        assert all(t.top_logprobs == [] for t in choice.logprobs.content)
        assert choice.message.to_dict() == {"role": "assistant", "content": ALLOWED,
                                            "refusal": None}
    else:
        assert choice.logprobs.tokens == tokens_of(ALLOWED)
        assert choice.logprobs.top_logprobs is None


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_an_allowed_stream_releases_logprobs_with_their_text(
    servers: tuple[str, str], kind: str
) -> None:
    chunks = [c.to_dict() for c in _blocked_or_allowed(servers, kind, ALLOWED, stream=True)]
    text, tokens = "", ""
    for chunk in chunks:
        for choice in chunk["choices"]:
            text += (choice["delta"].get("content") if kind == "chat" else choice["text"]) or ""
            logprobs = choice["logprobs"] or {}
            if kind == "chat":
                entries = logprobs.get("content") or []
                assert all(e["top_logprobs"] == [] for e in entries)
                tokens += "".join(e["token"] for e in entries)
                assert "x_stub" not in choice["delta"]
            else:
                tokens += "".join(logprobs.get("tokens") or [])
            assert text.startswith(tokens), (text, tokens)  # never before their text
    assert text == tokens == ALLOWED
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2


# ---------------------------------------------------------------------------- embedded engines


@pytest.mark.parametrize(("kind", "kwargs", "param"), [
    ("chat", {"logprobs": True}, "logprobs"),
    ("chat", {"logprobs": True, "top_logprobs": 2, "stream": True}, "logprobs"),
    ("completion", {"logprobs": 0}, "logprobs"),
    ("completion", {"logprobs": 1, "stream": True}, "logprobs"),
])
def test_an_embedded_engine_refuses_logprobs(
    llama_url: str, kind: str, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:  # a stream's comes before any byte
        _create(_client(llama_url, CLIENT_KEY), kind, "gemma", "Hi", max_tokens=2, **kwargs)
    body = info.value.body
    assert (body["type"], body["param"]) == ("invalid_request_error", param)  # type: ignore[index]
    assert "llama_cpp" in body["message"]  # type: ignore[index]


# ---------------------------------------------------------------------------- property

_SCRIPT: dict[str, Any] = {}  # the answer the in-test upstream gives next


async def _scripted(request: Request) -> Response:
    if isinstance(_SCRIPT["answer"], dict):
        return JSONResponse(_SCRIPT["answer"])
    events = [f"data: {json.dumps(e)}\n\n" for e in _SCRIPT["answer"]] + ["data: [DONE]\n\n"]
    return StreamingResponse(iter(events), media_type="text/event-stream")


@pytest.fixture(scope="module")
def scripted_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = fake_upstream(_scripted)
    app.post("/v1/completions")(_scripted)
    with thread_server(app) as upstream:
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("property"))},
            "models": {"m": {"backend": "openai", "base_url": f"{upstream}/v1"}},
        })
        with thread_server(create_app(config)) as url:
            yield url


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _fields(*read: str) -> st.SearchStrategy[dict[str, Any]]:
    """Random fields (random JSON values) whose names the proxy does not read."""
    names = st.text(min_size=1, max_size=8).filter(lambda k: k not in read)
    return st.dictionaries(names, _JSON, max_size=3)


_TOP = _fields("id", "object", "created", "model", "choices", "usage", "error")
_CHOICE = _fields("index", "message", "delta", "text", "finish_reason")
_MESSAGE = _fields("role", "content")
_USAGE = _fields("prompt_tokens", "completion_tokens", "total_tokens")
_KIND = st.sampled_from(["chat", "completion"])


def _usage(counts: tuple[int, int], extra: dict[str, Any]) -> dict[str, Any]:
    return {"prompt_tokens": counts[0], "completion_tokens": counts[1],
            "total_tokens": sum(counts), **extra}


def _post(url: str, kind: str, stream: bool) -> httpx.Response:
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    body: dict[str, Any] = {"model": "m", "stream": stream}
    body.update({"messages": [{"role": "user", "content": "x"}]} if kind == "chat"
                else {"prompt": "x"})
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(url + path, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response


@settings(max_examples=60, deadline=None)
@given(kind=_KIND, text=st.text(max_size=40), top=_TOP, choice=_CHOICE, message=_MESSAGE,
       usage=_USAGE, counts=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
       finish=st.sampled_from(["stop", "length", "content_filter"]))
def test_property_an_answer_arrives_as_the_upstream_sent_it(
    scripted_url: str, kind: str, text: str, top: dict[str, Any], choice: dict[str, Any],
    message: dict[str, Any], usage: dict[str, Any], counts: tuple[int, int], finish: str,
) -> None:
    part = ({"message": {"role": "assistant", "content": text, **message}} if kind == "chat"
            else {"text": text})
    answer = {"id": "up-1", "object": "chat.completion" if kind == "chat" else "text_completion",
              "created": 1, "model": "upstream-name",
              "choices": [{"index": 0, **part, "finish_reason": finish, **choice}],
              "usage": _usage(counts, usage), **top}
    _SCRIPT["answer"] = answer
    got = _post(scripted_url, kind, stream=False).json()
    expected = _without_own(answer)  # with the nulls the proxy always writes
    expected["choices"][0].setdefault("logprobs", None)
    if kind == "chat":
        expected["choices"][0]["message"].setdefault("refusal", None)
    assert _without_own(got) == expected
    assert [k for k in got if k in top] == list(top)  # the upstream's order


_PIECE = st.tuples(st.one_of(st.none(), st.text(min_size=1, max_size=8)), _TOP, _CHOICE, _MESSAGE)


def _event(kind: str, text: str | None, top: dict[str, Any], choice: dict[str, Any],
           delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """An upstream stream event (``text`` None: an event without text)."""
    if kind == "chat":
        part = {"delta": {**({} if text is None else {"content": text}), **delta}}
    else:
        part = {"text": text or ""}
    return {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, **part, "finish_reason": finish, **choice}], **top}


def _plain(event: dict[str, Any], kind: str) -> tuple[int, str] | None:
    """The choice index and text of an event that holds only text (the proxy may join those
    of one choice), else None."""
    part = "delta" if kind == "chat" else "text"
    if set(event) != {"choices"} or len(event["choices"]) != 1:
        return None
    choice = event["choices"][0]
    plain = {"index": choice.get("index"), part: None, "logprobs": None, "finish_reason": None}
    if {k: None if k == part else v for k, v in choice.items()} != plain:
        return None
    if kind == "completion":
        text = choice["text"]
    else:
        text = choice["delta"]["content"] if set(choice["delta"]) == {"content"} else None
    return (choice["index"], text) if text else None


def _normalised(events: list[dict[str, Any]], kind: str) -> list[Any]:
    """``events`` without the proxy's own keys, each run of text-only events of one choice as
    one (index, text)."""
    out: list[Any] = []
    for event in (_without_own(e) for e in events):
        event.pop("object", None)
        for choice in event.get("choices", []):
            choice.setdefault("logprobs", None)
        plain = _plain(event, kind)
        if plain is not None and out and isinstance(out[-1], tuple) and out[-1][0] == plain[0]:
            out[-1] = (plain[0], out[-1][1] + plain[1])
        else:
            out.append(plain if plain is not None else event)
    return out


@settings(max_examples=60, deadline=None)
@given(kind=_KIND, opening=st.one_of(st.none(), st.tuples(_TOP, _CHOICE, _MESSAGE)),
       pieces=st.lists(_PIECE, max_size=5), end=st.tuples(_TOP, _CHOICE, _MESSAGE),
       usage=st.tuples(_TOP, _USAGE))
def test_property_a_stream_arrives_as_the_upstream_sent_it(
    scripted_url: str, kind: str, opening: Any, pieces: list[Any], end: Any, usage: Any,
) -> None:
    role = {"role": "assistant", "content": ""}
    events = []
    if kind == "chat" and opening is not None:  # OpenAI's opening event
        events.append(_event(kind, None, opening[0], opening[1], {**role, **opening[2]}))
    for text, top, choice, delta in pieces:
        if text or top or choice or (delta and kind == "chat"):  # else the proxy sends nothing
            events.append(_event(kind, text, top, choice, delta))
    events.append(_event(kind, None, *end, finish="stop"))
    events.append({"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                   "choices": [], "usage": _usage((3, len(pieces)), usage[1]), **usage[0]})
    _SCRIPT["answer"] = events
    response = _post(scripted_url, kind, stream=True)
    got = [json.loads(block[len("data: "):]) for block in response.text.split("\n\n")
           if block.startswith("data: {")]
    expected = list(events)
    if kind == "chat" and opening is None:  # the proxy opens a chat stream itself
        expected.insert(0, _event(kind, None, {}, {}, role))
    assert _normalised(got, kind) == _normalised(expected, kind)


# tool calls and n > 1: random calls (unicode names and arguments), random choices

_CALL = st.tuples(st.text(min_size=1, max_size=6), st.text(max_size=12),
                  st.lists(st.integers(0, 12), max_size=3))  # name, arguments, cuts
_CALL_CHOICE = st.tuples(st.one_of(st.none(), st.text(min_size=1, max_size=10)),
                         st.lists(_CALL, max_size=2), _CHOICE, _MESSAGE)


def _cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    return [text[a:b] for a, b in zip(points, points[1:])] or [""]


@settings(max_examples=50, deadline=None)
@given(choices=st.lists(_CALL_CHOICE, min_size=1, max_size=3), top=_TOP)
def test_property_tool_calls_and_choices_arrive_as_the_upstream_sent_them(
    scripted_url: str, choices: list[Any], top: dict[str, Any]
) -> None:
    answer_choices = []
    for index, (text, calls, choice, message) in enumerate(choices):
        tool_calls = [{"id": f"call_{index}_{k}", "type": "function",
                       "function": {"name": name, "arguments": arguments}}
                      for k, (name, arguments, _) in enumerate(calls)]
        body = {"role": "assistant", "content": text, **message,
                **({"tool_calls": tool_calls} if tool_calls else {})}
        answer_choices.append({"index": index, "message": body,
                               "finish_reason": "tool_calls" if calls else "stop", **choice})
    answer = {"id": "up-1", "object": "chat.completion", "created": 1, "model": "up",
              "choices": answer_choices, "usage": _usage((1, 2), {}), **top}
    _SCRIPT["answer"] = answer
    got = _post(scripted_url, "chat", stream=False).json()
    expected = _without_own(answer)
    for choice in expected["choices"]:
        choice.setdefault("logprobs", None)
        choice["message"].setdefault("refusal", None)
    assert _without_own(got) == expected


@settings(max_examples=50, deadline=None)
@given(choices=st.lists(_CALL_CHOICE, min_size=1, max_size=3), order=st.randoms(),
       top=_TOP)
def test_property_streamed_tool_calls_and_choices_arrive_as_the_upstream_sent_them(
    scripted_url: str, choices: list[Any], order: Any, top: dict[str, Any]
) -> None:
    """Each choice opens with its role (and its first call's head), then its text and each
    call's argument fragments, then its finish; the choices' events interleave at random."""
    streams = []
    for index, (text, calls, choice, delta) in enumerate(choices):
        def event(part: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "up-1", "object": "chat.completion.chunk", "created": 1,
                    "model": "up", "choices": [{"index": index, "delta": part,
                                                "finish_reason": finish, **choice}], **top}
        own = [event({"role": "assistant", "content": None if calls else "", **delta})]
        if text:
            own.append(event({"content": text}))
        for k, (name, arguments, cuts) in enumerate(calls):
            head = {"index": k, "id": f"call_{index}_{k}", "type": "function",
                    "function": {"name": name, "arguments": ""}}
            own.append(event({"tool_calls": [head]}))
            own += [event({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
                    for piece in _cut(arguments, cuts) if piece]
        own.append(event({}, "tool_calls" if calls else "stop"))
        streams.append(own)
    events = []
    while any(streams):
        stream = order.choice([s for s in streams if s])
        events.append(stream.pop(0))
    events.append({"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                   "choices": [], "usage": _usage((3, 4), {}), **top})
    _SCRIPT["answer"] = events
    response = _post(scripted_url, "chat", stream=True)
    got = [json.loads(block[len("data: "):]) for block in response.text.split("\n\n")
           if block.startswith("data: {")]
    assert _normalised(got, "chat") == _normalised(events, "chat")
