"""What the stub upstream answers with ``--rich``: OpenAI's answers in full, for passthrough tests.

Every answer carries what OpenAI's do beyond the text (``system_fingerprint``,
``service_tier``, usage details, the logprobs of each token with one alternative) and an
unknown ``x_stub`` field at each level (answer, choice, message or delta, usage). A request
shapes its answer as a real model server's would be shaped:

- ``n``: that many choices; the echoed text split on `` || `` gives each choice its own text
  (choice ``i`` the ``i``-th part, cycling), so a test can make one choice differ;
- ``tools`` (chat): the answer calls them (every tool, or the first with
  ``parallel_tool_calls: false``, or the one ``tool_choice`` names; none for ``"none"``), each
  with arguments that fit its JSON schema and carry the choice's text (JSON-escaped: non-ASCII
  as ``\\uXXXX``, as Python's ``json.dumps`` writes); legacy ``functions`` likewise, through
  ``function_call``;
- ``stream``: OpenAI's event shapes: a choice's opening event (its role, and a tool call's id
  and name), one event per text token or per character of tool-call arguments, a finish event
  per choice, the choices' events interleaved, then the usage event.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

FINGERPRINT = {"service_tier": "default", "system_fingerprint": "fp_stub_0001"}
UNKNOWN = {"x_stub": {"note": "an unknown field", "ok": True}}
CHOICE_SEPARATOR = " || "
_TOKEN = re.compile(r"\s*\S{1,5}|\s+")


def tokens_of(text: str) -> list[str]:
    """``text`` cut into the pieces an echoing stub streams (joined, they give ``text``)."""
    return _TOKEN.findall(text)


def usage_counts(pieces: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": len(pieces), "total_tokens": 8 + len(pieces)}


def _rich_usage(pieces: list[str]) -> dict[str, Any]:
    return {**usage_counts(pieces),
            "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
            **UNKNOWN}


def _token(piece: str, i: int) -> dict[str, Any]:
    return {"token": piece, "logprob": -0.25 * (i % 4), "bytes": list(piece.encode())}


def rich_logprobs(pieces: list[str], chat: bool, start: int = 0) -> dict[str, Any]:
    """The logprobs of ``pieces`` (one token each, the first the answer's ``start``-th), each
    with one alternative, ``ALT``."""
    if chat:
        content = [{**_token(p, i), "top_logprobs": [_token(p, i), _token("ALT", i + 1)]}
                   for i, p in enumerate(pieces, start)]
        return {"content": content, "refusal": None}
    return {"tokens": list(pieces), "token_logprobs": [-0.25 * (i % 4) for i, _ in
                                                       enumerate(pieces, start)],
            "top_logprobs": [{p: -0.25, "ALT": -1.5} for p in pieces],
            "text_offset": [len("".join(pieces[:i])) for i in range(len(pieces))]}


@dataclass(frozen=True)
class _Choice:
    """What one choice of an answer holds: text pieces, or calls."""

    pieces: list[str]
    tool_calls: list[dict[str, Any]]
    function_call: dict[str, Any] | None

    @property
    def finish(self) -> str:
        return "tool_calls" if self.tool_calls else (
            "function_call" if self.function_call else "stop")


def _value(schema: Any, text: str) -> Any:
    """A value of JSON schema ``schema`` made from ``text``."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object" or (isinstance(schema, dict) and "properties" in schema):
        return _arguments(schema, text)
    return {"integer": len(text), "number": len(text) / 2, "boolean": True,
            "array": [text], "null": None}.get(kind, text)


def _arguments(schema: Any, text: str) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return {"text": text}
    return {name: _value(sub, text) for name, sub in properties.items()}


def _called(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The function definitions the answer calls, and whether they are legacy ``functions``."""
    tools = [t["function"] for t in body.get("tools") or []
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    legacy = not tools
    functions = tools or [f for f in body.get("functions") or [] if isinstance(f, dict)]
    choice = body.get("tool_choice", body.get("function_call"))
    if choice == "none" or not functions:
        return [], legacy
    if isinstance(choice, dict):
        name = (choice.get("function") or choice).get("name")
        return [f for f in functions if f.get("name") == name][:1], legacy
    if legacy or body.get("parallel_tool_calls") is False:
        return functions[:1], legacy
    return functions, legacy


def _choices(body: dict[str, Any], chat: bool, text: str) -> list[_Choice]:
    parts = text.split(CHOICE_SEPARATOR)
    count = body.get("n") if isinstance(body.get("n"), int) and body["n"] > 0 else 1
    functions, legacy = _called(body) if chat else ([], False)
    choices = []
    for i in range(count):
        part = parts[i % len(parts)]
        calls = [{"name": f.get("name", "f"),
                  "arguments": json.dumps(_arguments(f.get("parameters"), part))}
                 for f in functions]
        if legacy:
            choices.append(_Choice([] if calls else tokens_of(part), [],
                                   calls[0] if calls else None))
        else:
            choices.append(_Choice([] if calls else tokens_of(part), [
                {"id": f"call_{i}_{k}", "type": "function", "function": call}
                for k, call in enumerate(calls)], None))
    return choices


def _answer_choice(choice: _Choice, chat: bool, index: int) -> dict[str, Any]:
    text = "".join(choice.pieces)
    out: dict[str, Any] = {"index": index}
    if not chat:
        out["text"] = text
    elif choice.tool_calls or choice.function_call:
        calls = ({"tool_calls": choice.tool_calls} if choice.tool_calls
                 else {"function_call": choice.function_call})
        out["message"] = {"role": "assistant", "content": None, **calls, "refusal": None,
                          "annotations": [], **UNKNOWN}
    else:
        out["message"] = {"role": "assistant", "content": text, "refusal": None,
                          "annotations": [], **UNKNOWN}
    logprobs = rich_logprobs(choice.pieces, chat) if choice.pieces or not chat else None
    out.update({"logprobs": logprobs, "finish_reason": choice.finish, **UNKNOWN})
    return out


def _answer(choices: list[_Choice], chat: bool) -> dict[str, Any]:
    pieces = [p for c in choices for p in c.pieces]
    return {"id": "stub-rich", "object": "chat.completion" if chat else "text_completion",
            "created": 1700000000, "model": "stub",
            "choices": [_answer_choice(c, chat, i) for i, c in enumerate(choices)],
            "usage": _rich_usage(pieces), **FINGERPRINT, **UNKNOWN}


def rich_answer(pieces: list[str], chat: bool, finish: str = "stop") -> dict[str, Any]:
    """A complete answer of one choice, the text ``pieces``, with everything ``--rich`` adds."""
    answer = _answer([_Choice(pieces, [], None)], chat)
    answer["choices"][0]["finish_reason"] = finish
    return answer


def rich_reply(body: dict[str, Any], chat: bool, text: str) -> dict[str, Any]:
    """The complete answer to request ``body`` whose echoed text is ``text``."""
    return _answer(_choices(body, chat, text), chat)


def _choice_events(choice: _Choice, chat: bool, index: int) -> list[dict[str, Any]]:
    """One choice's stream events (their ``choices`` entries)."""
    def entry(part: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> Any:
        return {"index": index, **part, "logprobs": logprobs, "finish_reason": finish,
                **UNKNOWN}

    events: list[dict[str, Any]] = []
    calls = choice.tool_calls or ([choice.function_call] if choice.function_call else [])
    if chat:
        opening: dict[str, Any] = {"role": "assistant", "content": None if calls else ""}
        events.append(entry({"delta": opening}))
    for k, call in enumerate(calls):
        function = call.get("function", call)
        head = {"name": function["name"], "arguments": ""}
        if choice.function_call:
            start: dict[str, Any] = {"function_call": head}
        else:
            start = {"tool_calls": [{"index": k, "id": call["id"], "type": "function",
                                     "function": head}]}
        if k == 0:
            events[-1]["delta"].update(start)
        else:
            events.append(entry({"delta": start}))
        for char in function["arguments"]:
            fragment = {"arguments": char}
            events.append(entry({"delta": {"function_call": fragment} if choice.function_call
                                 else {"tool_calls": [{"index": k, "function": fragment}]}}))
    if chat and not calls:
        events[-1]["delta"]["refusal"] = None
    for i, piece in enumerate(choice.pieces):
        part = {"delta": {"content": piece, **UNKNOWN}} if chat else {"text": piece}
        events.append(entry(part, rich_logprobs([piece], chat, i)))
    events.append(entry({"delta": {}} if chat else {"text": ""}, None, choice.finish))
    return events


def _stream(choices: list[_Choice], chat: bool) -> list[dict[str, Any]]:
    base = {"id": "stub-rich", "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 1700000000, "model": "stub", **FINGERPRINT}
    per_choice = [_choice_events(c, chat, i) for i, c in enumerate(choices)]
    events = [{**base, "choices": [entry], **UNKNOWN}
              for step in zip_longest(*per_choice) for entry in step if entry is not None]
    pieces = [p for c in choices for p in c.pieces]
    return [*events, {**base, "choices": [], "usage": _rich_usage(pieces), **UNKNOWN}]


def rich_events(pieces: list[str], chat: bool, finish: str = "stop") -> list[dict[str, Any]]:
    """A stream of one choice, the text ``pieces``, with everything ``--rich`` adds."""
    events = _stream([_Choice(pieces, [], None)], chat)
    events[-2]["choices"][0]["finish_reason"] = finish
    return events


def rich_stream(body: dict[str, Any], chat: bool, text: str) -> list[dict[str, Any]]:
    """The stream answering request ``body`` whose echoed text is ``text``."""
    return _stream(_choices(body, chat, text), chat)
