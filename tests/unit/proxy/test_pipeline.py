"""The request lifecycle in ``proxy.pipeline`` on its own: admit, generate, stream, speculation.

Guards here are tiny word matchers and the backend is scripted, so each rule of the lifecycle
(first block wins, fail modes, hold-back, the final check, block answers, audit, metrics) is
pinned down exactly and fast enough to run for every mutant (``make mutation``). The real
guards, backends and server are exercised in ``tests/e2e/test_stream_guarantee.py`` and
``tests/e2e/test_block_modes.py``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from filters.base import Match, Verdict
from proxy.core.types import Chunk, Generation, GenerationParams, Usage
from proxy.core.config import ForgetTargetConfig, PolicyConfig
from proxy.core.errors import GuardFailedError, PolicyBlockedError
from proxy.metrics import Metrics
from proxy.pipeline import Decision, Pipeline, PolicyRuntime, Request, Speculation, block_answer
from proxy.store import SqliteStore, Store

SECRET = "Zorblax"
ANSWER = f"The inventor was {SECRET} of Vell, long ago."
USAGE = Usage(3, 9)
TARGET = ForgetTargetConfig(id="zorblax", name=SECRET)


@dataclass
class WordGuard:
    """Blocks (or rewrites) a text containing ``word``; ``only_final`` output checks see it
    only in the finished text; ``fails`` raises instead."""

    word: str
    name: str = "words"
    action: str = "block"
    only_final: bool = False
    fails: bool = False
    hold_back_chars: int = len(SECRET)
    calls: list[str] = field(default_factory=list)
    seen: list[tuple[list[Any], str]] = field(default_factory=list)  # output checks: messages, thread

    def _verdict(self, text: str) -> Verdict:
        self.calls.append(text)
        if self.fails:
            raise RuntimeError("guard down")
        if self.word in text:
            return Verdict(self.action, self.name, 0.9, 0.5, Match("zorblax", self.word, text),
                           elapsed_ms=1.0)  # type: ignore[arg-type]
        return Verdict("allow", self.name, 0.1, 0.5, elapsed_ms=1.0)

    def check_input(self, messages: Sequence[dict[str, Any]]) -> Verdict:
        return self._verdict(" ".join(str(m.get("content", "")) for m in messages))

    def check_output(self, messages: Sequence[dict[str, Any]], text: str, *,
                     final: bool = False) -> Verdict:
        self.seen.append((list(messages), threading.current_thread().name))
        return self._verdict(text if final or not self.only_final else "")

    def release_limit(self, text: str) -> int:
        return len(text) - self.hold_back_chars


@dataclass
class Runtime:
    """A :class:`PolicyRuntime` whose context builder appends a marker turn."""

    config: PolicyConfig
    input_guards: Sequence[Any] = ()
    output_guards: Sequence[Any] = ()
    name: str = "p"
    detected: list[bool] = field(default_factory=list)

    def release_limit(self, text: str) -> int:
        return min((g.release_limit(text) for g in self.output_guards), default=len(text))

    def build_context(self, request: Request, *, detected: bool,
                      count_tokens: Callable[[str], int]) -> tuple[Request, int]:
        self.detected.append(detected)
        added = {"role": "system", "content": "context"}
        return replace(request, messages=[added, *request.messages]), count_tokens("context")


@dataclass
class Backend:
    """Answers with ``pieces`` (joined when not streaming) and records what it was sent."""

    pieces: Sequence[str] = (ANSWER,)
    finish: str = "stop"
    sent: list[Any] = field(default_factory=list)
    params: list[GenerationParams] = field(default_factory=list)
    gate: asyncio.Event | None = None
    cancelled: int = 0  # calls cancelled while waiting at the gate

    async def chat(self, messages: Any, params: GenerationParams) -> Generation:
        self.sent.append(messages)
        self.params.append(params)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return Generation("".join(self.pieces), self.finish, USAGE)

    async def complete(self, prompt: str, params: GenerationParams) -> Generation:
        return await self.chat(prompt, params)

    async def stream_chat(self, messages: Any, params: GenerationParams) -> AsyncIterator[Chunk]:
        self.sent.append(messages)
        self.params.append(params)
        for piece in self.pieces:
            yield Chunk(piece)
        yield Chunk(finish_reason=self.finish or None, usage=USAGE)

    def stream_complete(self, prompt: str, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self.stream_chat(prompt, params)

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1


CONTEXT = {"role": "system", "content": "context"}  # what Runtime.build_context adds


def policy(**options: Any) -> PolicyConfig:
    return PolicyConfig(forget=[TARGET], **options)


def make(runtime: Runtime, backend: Backend | None = None, store: Store | None = None
         ) -> tuple[Pipeline, Backend, Metrics]:
    backend = backend or Backend()
    metrics = Metrics()
    policies: dict[str, PolicyRuntime] = {runtime.name: runtime}
    return Pipeline(backends={"m": backend}, policies=policies, metrics=metrics,
                    store=store), backend, metrics


PARAMS = GenerationParams(max_tokens=7, temperature=0.0)


def chat(content: str | None = "Tell me a story.", kind: str = "chat") -> Request:
    if kind == "completion":
        return Request("completion", "m", [], PARAMS, "req-1", prompt=content)
    return Request("chat", "m", [{"role": "user", "content": content}], PARAMS, "req-1")


class Clock:
    """Stands in for ``proxy.pipeline.time``: each ``perf_counter()`` call advances 0.25 s."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        self.now += 0.25
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("proxy.pipeline.time", fake)
    return fake


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [c async for c in chunks]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------- block answers and requests


@pytest.mark.parametrize(("on_block", "text", "finish"), [
    ("refuse", "I'm sorry, but I can't help with that.", "content_filter"),
    ("feign", "I'm not sure — I don't have any information about that.", "stop"),
])
def test_block_answer(on_block: str, text: str, finish: str) -> None:
    answer = block_answer(policy(on_block=on_block), Verdict("block", "g"))
    assert (answer.text, answer.finish_reason) == (text, finish)


def test_block_answer_error_mode_raises_with_the_guard_named() -> None:
    with pytest.raises(PolicyBlockedError, match=r"blocked by policy \(g7\)"):
        block_answer(policy(on_block="error"), Verdict("block", "g7"))


def test_guard_messages() -> None:
    assert chat("hi", "completion").guard_messages == [{"role": "user", "content": "hi"}]
    assert Request("completion", "m", [], GenerationParams(), "r").guard_messages == [
        {"role": "user", "content": ""}]
    assert chat("hi").guard_messages == [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    params = GenerationParams(extra={"tools": tools, "suffix": "end", "logprobs": True})
    completion = Request("completion", "m", [], params, "r", prompt="p")
    assert completion.guard_messages == [
        {"role": "user", "content": "p"}, {"role": "request", "tools": tools, "suffix": "end"}]
    assert Decision("p").action == "allow"
    assert Decision("p", blocking=Verdict("block", "g")).action == "block"


# ---------------------------------------------------------------- input side


def test_no_policy_admits_unchanged() -> None:
    pipeline, _, _ = make(Runtime(policy()))
    request = chat(SECRET)
    decision, sent = run(pipeline.admit(request, None))
    assert (decision, sent) == (Decision(None), request)


def test_first_input_block_wins_and_is_audited(tmp_path: Path) -> None:
    first, second = WordGuard(SECRET, "first"), WordGuard(SECRET, "second")
    runtime = Runtime(policy(audit_prompts=True), input_guards=[first, second])
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, metrics = make(runtime, store=store)
    decision, sent = run(pipeline.admit(chat(f"Who is {SECRET}?"), "p"))
    assert decision.blocking is not None and decision.blocking.guard == "first"
    assert decision.action == "block" and decision.guard_ms > 0
    assert [v.guard for v in decision.verdicts] == ["first"] and second.calls == []
    assert sent == chat(f"Who is {SECRET}?") and runtime.detected == []  # no context built
    assert sample(metrics, "unlearn_decisions_total", policy="p", method="first",
                  action="block") == 1
    [record] = store.audit()
    assert {k: record[k] for k in ("request_id", "action", "policy", "method", "target_id",
                                   "item", "score", "prompt")} == {
        "request_id": "req-1", "action": "block", "policy": "p", "method": "first",
        "target_id": "zorblax", "item": SECRET, "score": 0.9, "prompt": f"Who is {SECRET}?"}


def test_prompts_are_audited_only_when_asked(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, _ = make(Runtime(policy(), input_guards=[WordGuard(SECRET)]), store=store)
    run(pipeline.admit(chat(SECRET), "p"))
    assert [r["prompt"] for r in store.audit()] == [None]


def test_allowed_request_gets_its_context_and_every_guard() -> None:
    guards = [WordGuard("nothing", "a"), WordGuard("Vell", "b", action="rewrite")]
    runtime = Runtime(policy(), input_guards=guards)
    pipeline, _, metrics = make(runtime)
    decision, sent = run(pipeline.admit(chat("Tell me about Vell."), "p"))
    assert decision.blocking is None and [v.action for v in decision.verdicts] == ["allow",
                                                                                   "rewrite"]
    assert runtime.detected == [True]
    assert sent.messages[0] == {"role": "system", "content": "context"}
    assert decision.added_prompt_tokens == 2
    assert sample(metrics, "unlearn_icul_prompt_tokens_count") == 1
    assert sample(metrics, "unlearn_decisions_total", policy="p", method="b",
                  action="rewrite") == 1
    assert sample(metrics, "unlearn_guard_latency_seconds_count", guard="a") == 1


def test_nothing_detected_when_no_guard_rewrites() -> None:
    runtime = Runtime(policy(), input_guards=[WordGuard("nothing")])
    pipeline, _, metrics = make(runtime)
    decision, _ = run(pipeline.admit(chat(), "p"))
    assert runtime.detected == [False] and decision.added_prompt_tokens == 2


@pytest.mark.parametrize(("mode", "as_", "action"), [
    ("closed", "block", "guard_failed"), ("open", "block", "allow"), ("open", "error", "allow")])
def test_a_failing_guard_follows_fail_mode(mode: str, as_: str, action: str, tmp_path: Path) -> None:
    runtime = Runtime(policy(fail_mode=mode, fail_closed_as=as_),
                      input_guards=[WordGuard(SECRET, fails=True)])
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, metrics = make(runtime, store=store)
    decision, _ = run(pipeline.admit(chat(), "p"))
    verdict = "block" if mode == "closed" else "allow"
    assert [(v.action, v.guard, v.failed) for v in decision.verdicts] == [
        (verdict, "words:failed", True)]
    assert decision.action == action and decision.failed_guards == ["words:failed"]
    assert sample(metrics, "unlearn_guard_failures_total", policy="p", guard="words",
                  fail_mode=mode) == 1
    [record] = store.audit()  # an outage is audited as one, never as a block
    assert (record["action"], record["method"]) == ("guard_failed", "words:failed")


def test_a_failing_guard_under_fail_closed_is_a_retryable_503(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, backend, metrics = make(
        Runtime(policy(), input_guards=[WordGuard(SECRET, fails=True)]), store=store)
    with pytest.raises(GuardFailedError, match="words of policy p is unavailable") as raised:
        run(pipeline.admit(chat(), "p"))
    assert (raised.value.status_code, raised.value.error_type) == (503, "server_error")
    assert raised.value.headers == {"x-should-retry": "true"}
    [record] = store.audit()
    assert (record["action"], record["method"]) == ("guard_failed", "words:failed")
    assert sample(metrics, "unlearn_guard_failures_total", policy="p", guard="words",
                  fail_mode="closed") == 1


# ---------------------------------------------------------------- speculation


def test_speculation_is_used_when_allowed_and_cancelled_when_blocked() -> None:
    async def scenario() -> tuple[Any, ...]:
        runtime = Runtime(policy(speculate=True), input_guards=[WordGuard(SECRET)])
        backend = Backend(gate=asyncio.Event())
        pipeline, _, metrics = make(runtime, backend)
        backend.gate.set()  # type: ignore[union-attr]
        answer = await pipeline.answer(chat("Tell me a story."), "p")
        backend.gate = asyncio.Event()  # the blocked request's call never finishes on its own
        blocked = await pipeline.answer(chat(SECRET), "p")
        await asyncio.sleep(0)
        return answer, blocked, backend, metrics

    answer, blocked, backend, metrics = run(scenario())
    assert answer.text == ANSWER and not answer.blocked
    assert blocked.blocked and backend.cancelled == 1 and len(backend.sent) == 2
    # The speculative call was sent the request as the client wrote it (no context).
    assert backend.sent[0] == [{"role": "user", "content": "Tell me a story."}]
    assert sample(metrics, "unlearn_speculations_total", policy="p", outcome="used") == 1
    assert sample(metrics, "unlearn_speculations_total", policy="p", outcome="cancelled") == 1


def test_no_speculation_without_the_option() -> None:
    pipeline, backend, _ = make(Runtime(policy()))
    run(pipeline.answer(chat(), "p"))
    assert backend.sent == [[CONTEXT, {"role": "user", "content": "Tell me a story."}]]
    assert pipeline._speculate(chat(), None, stream=True) is None


def test_speculated_stream_is_read_ahead_and_relayed() -> None:
    async def scenario() -> list[Chunk]:
        runtime = Runtime(policy(speculate=True))
        pipeline, _, _ = make(runtime, Backend(pieces=("a", "b")))
        return await collect(pipeline.answer_stream(chat(), "p"))

    assert run(scenario()) == [Chunk("a"), Chunk("b"), Chunk(finish_reason="stop", usage=USAGE)]


def test_a_failing_speculated_stream_raises_to_the_reader() -> None:
    class Broken(Backend):
        async def stream_chat(self, messages: Any, params: GenerationParams
                              ) -> AsyncIterator[Chunk]:
            yield Chunk("a")
            raise ConnectionError("upstream gone")

    async def scenario() -> None:
        pipeline, _, _ = make(Runtime(policy(speculate=True)), Broken())
        await collect(pipeline.answer_stream(chat(), "p"))

    with pytest.raises(ConnectionError, match="upstream gone"):
        run(scenario())


def test_a_guard_crash_in_admit_cancels_the_speculation() -> None:
    class Exploding(Runtime):
        def build_context(self, request: Request, **_: Any) -> tuple[Request, int]:
            raise KeyError("boom")

    async def scenario() -> int:
        pipeline, backend, _ = make(Exploding(policy(speculate=True)),
                                    Backend(gate=asyncio.Event()))
        with pytest.raises(KeyError):
            await pipeline.answer(chat(), "p")
        await asyncio.sleep(0)
        return backend.cancelled

    assert run(scenario()) == 1


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_generate_without_output_guards_returns_the_answer(kind: str) -> None:
    pipeline, backend, metrics = make(Runtime(policy()))
    answer = run(pipeline.answer(chat("q", kind), "p"))
    assert (answer.text, answer.finish_reason, answer.usage, answer.blocked) == (
        ANSWER, "stop", USAGE, False)
    assert backend.sent == (["q"] if kind == "completion" else [[CONTEXT, {"role": "user",
                                                                            "content": "q"}]])
    assert sample(metrics, "unlearn_upstream_latency_seconds_count", model="m") == 1


@pytest.mark.parametrize(("on_block", "text", "finish"), [
    ("refuse", "I'm sorry, but I can't help with that.", "content_filter"),
    ("feign", "I'm not sure — I don't have any information about that.", "stop"),
])
def test_generate_replaces_a_blocked_answer(tmp_path: Path, on_block: str, text: str,
                                            finish: str) -> None:
    guard = WordGuard(SECRET, "out", only_final=True)
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, metrics = make(Runtime(policy(on_block=on_block), output_guards=[guard]),
                                store=store)
    answer = run(pipeline.answer(chat(), "p"))
    decision = answer.decision
    assert (answer.text, answer.finish_reason, answer.usage) == (text, finish, USAGE)
    assert guard.calls == [ANSWER]
    assert decision.blocking is not None and decision.blocking.guard == "out"
    assert [(r["action"], r["method"]) for r in store.audit()] == [("block", "out")]
    assert sample(metrics, "unlearn_decisions_total", policy="p", method="out",
                  action="block") == 1


def test_generate_error_mode_raises() -> None:
    pipeline, _, _ = make(Runtime(policy(on_block="error"), output_guards=[WordGuard(SECRET)]))
    with pytest.raises(PolicyBlockedError):
        run(pipeline.answer(chat(), "p"))


def test_generate_keeps_an_allowed_answer() -> None:
    guard = WordGuard("nothing-here")
    pipeline, _, _ = make(Runtime(policy(), output_guards=[guard]))
    reply = run(pipeline.answer(chat(), "p"))
    decision = reply.decision
    assert reply.text == ANSWER
    assert decision.blocking is None and guard.calls == [ANSWER]


def test_the_first_blocking_output_guard_decides() -> None:
    first, second = WordGuard(SECRET, "first"), WordGuard(SECRET, "second")
    pipeline, _, _ = make(Runtime(policy(), output_guards=[first, second]))
    decision = run(pipeline.answer(chat(), "p")).decision
    assert decision.blocking is not None and decision.blocking.guard == "first"
    assert second.calls == []


def test_a_failing_output_guard_follows_fail_mode() -> None:
    closed = make(Runtime(policy(), output_guards=[WordGuard("x", fails=True)]))[0]
    with pytest.raises(GuardFailedError):
        run(closed.answer(chat(), "p"))
    with pytest.raises(GuardFailedError):
        run(collect(closed.answer_stream(chat(), "p")))
    as_block = make(Runtime(policy(fail_closed_as="block"),
                            output_guards=[WordGuard("x", fails=True)]))[0]
    assert run(as_block.answer(chat(), "p")).finish_reason == "content_filter"
    opened = make(Runtime(policy(fail_mode="open"), output_guards=[WordGuard("x", fails=True)]))[0]
    assert run(opened.answer(chat(), "p")).text == ANSWER


def test_a_stream_stops_calling_an_output_guard_that_failed_open(tmp_path: Path) -> None:
    broken, working = WordGuard("x", "broken", fails=True), WordGuard("nothing", "working")
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, metrics = make(
        Runtime(policy(fail_mode="open"), output_guards=[broken, working]),
        Backend(pieces=letters()), store=store)
    chunks = run(collect(pipeline.answer_stream(chat(), "p")))
    assert "".join(c.text for c in chunks) == ANSWER
    assert len(broken.calls) == 1 and len(working.calls) == len(ANSWER) + 1
    assert [r["action"] for r in store.audit()] == ["guard_failed"]
    assert sample(metrics, "unlearn_guard_failures_total", policy="p", guard="broken",
                  fail_mode="open") == 1


# ---------------------------------------------------------------- stream


def letters(text: str = ANSWER) -> tuple[str, ...]:
    return tuple(text)


def released_before_end(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks[:-2])


def test_allowed_stream_arrives_whole_with_finish_and_usage() -> None:
    guard = WordGuard("nothing-here", hold_back_chars=5)
    pipeline, _, metrics = make(Runtime(policy(), output_guards=[guard]),
                                Backend(pieces=letters(), finish="length"))
    chunks = run(collect(pipeline.answer_stream(chat(), "p")))
    assert "".join(c.text for c in chunks) == ANSWER
    assert chunks[-1] == Chunk(finish_reason="length", usage=USAGE)
    # Every piece is released once the guard has seen 5 more characters after it.
    assert [c.text for c in chunks[:-2]] == list(ANSWER[: len(ANSWER) - 5])
    assert chunks[-2].text == ANSWER[-5:]
    assert guard.calls[-1] == ANSWER and len(guard.calls) == len(ANSWER) + 1  # + final check
    assert sample(metrics, "unlearn_upstream_latency_seconds_count", model="m") == 1


def test_stream_without_policy_guards_relays_every_piece() -> None:
    pipeline, _, _ = make(Runtime(policy()), Backend(pieces=("a", "", "b")))
    chunks = run(collect(pipeline.answer_stream(chat(), None)))
    assert chunks == [Chunk("a"), Chunk("b"), Chunk(finish_reason="stop", usage=USAGE)]


def test_hold_back_keeps_the_name_from_the_client() -> None:
    guard = WordGuard(SECRET)
    pipeline, _, _ = make(Runtime(policy(), output_guards=[guard]), Backend(pieces=letters()))
    chunks = run(collect(pipeline.answer_stream(chat(), "p")))
    before = released_before_end(chunks)
    assert before == "The inventor was"  # the name is 7 characters held back: none of it
    assert chunks[-2:] == [Chunk("I'm sorry, but I can't help with that."),
                           Chunk(finish_reason="content_filter", usage=None)]


def test_the_final_check_blocks_what_only_the_whole_text_shows(tmp_path: Path) -> None:
    guard = WordGuard(SECRET, "end", only_final=True)
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, _ = make(Runtime(policy(), output_guards=[guard]),
                          Backend(pieces=("The inventor was ", SECRET, ".")), store)
    stream = pipeline.answer_stream(chat(), "p")
    chunks = run(collect(stream))
    decision = stream.decision
    assert SECRET not in "".join(c.text for c in chunks)
    assert chunks[-1] == Chunk(finish_reason="content_filter", usage=USAGE)
    assert decision.blocking is not None and decision.blocking.guard == "end"
    assert [r["method"] for r in store.audit()] == ["end"]


def test_hold_back_is_the_largest_any_guard_needs() -> None:
    small, large = WordGuard("nothing", "s", hold_back_chars=2), WordGuard("x", "l",
                                                                           hold_back_chars=9)
    large.word = "nothing-either"
    pipeline, _, _ = make(Runtime(policy(), output_guards=[small, large]),
                          Backend(pieces=letters()))
    chunks = run(collect(pipeline.answer_stream(chat(), "p")))
    assert chunks[-2].text == ANSWER[-9:]


@pytest.mark.parametrize(("options", "finish", "text"), [
    ({"stream_block": "strict"}, None, None),
    ({"on_block": "error"}, None, None),
    ({"on_block": "feign"}, "stop", "I'm not sure — I don't have any information about that."),
])
def test_stream_block_modes(options: dict[str, str], finish: str | None, text: str | None) -> None:
    pipeline, _, _ = make(Runtime(policy(**options), output_guards=[WordGuard(SECRET)]),
                          Backend(pieces=letters()))
    received: list[Chunk] = []

    async def read() -> None:
        async for chunk in pipeline.answer_stream(chat(), "p"):
            received.append(chunk)

    if finish is None:
        with pytest.raises(PolicyBlockedError, match=r"response was blocked by policy \(words\)"):
            run(read())
        assert "".join(c.text for c in received) == "The inventor was"
    else:
        run(read())
        assert received[-2:] == [Chunk(text or ""), Chunk(finish_reason=finish)]


# ---------------------------------------------------------------- the whole lifecycle, timing


def test_admitted_request_keeps_its_policy_for_the_output_side() -> None:
    runtime = Runtime(policy(), input_guards=[WordGuard("nothing")],
                      output_guards=[WordGuard(SECRET, "out")])
    pipeline, _, _ = make(runtime)
    reply = run(pipeline.answer(chat(), "p"))
    assert reply.decision.policy == "p" and reply.decision.blocking is not None
    assert reply.finish_reason == "content_filter"


def test_no_policy_generates_and_streams_unguarded() -> None:
    pipeline, _, _ = make(Runtime(policy(), output_guards=[WordGuard(SECRET)]))
    assert run(pipeline.answer(chat(), None)).text == ANSWER
    assert "".join(c.text for c in run(collect(pipeline.answer_stream(chat(), None)))) == ANSWER


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_the_backend_gets_the_request_parameters(kind: str) -> None:
    pipeline, backend, _ = make(Runtime(policy()))
    run(pipeline.answer(chat("q", kind), "p"))
    run(collect(pipeline.answer_stream(chat("q", kind), "p")))
    assert backend.params == [PARAMS, PARAMS]


def test_a_completion_without_prompt_sends_an_empty_one() -> None:
    pipeline, backend, _ = make(Runtime(policy()))
    run(pipeline.answer(chat(None, "completion"), "p"))
    run(collect(pipeline.answer_stream(chat(None, "completion"), "p")))
    assert backend.sent == ["", ""]


def test_guard_and_upstream_times_are_measured(clock: Clock) -> None:
    runtime = Runtime(policy(), input_guards=[WordGuard("nothing", "a")])
    pipeline, _, metrics = make(runtime)
    reply = run(pipeline.answer(chat(), "p"))
    assert reply.decision.guard_ms == 250.0  # one clock tick of 0.25 s between start and end
    assert sample(metrics, "unlearn_upstream_latency_seconds_sum", model="m") == 0.25
    run(collect(pipeline.answer_stream(chat(), "p")))
    assert sample(metrics, "unlearn_upstream_latency_seconds_sum", model="m") == 0.5
    # Guards report their own time (1 ms a request here); the histogram is in seconds.
    assert sample(metrics, "unlearn_guard_latency_seconds_sum", guard="a") == 0.002


def test_finished_speculations_leave_nothing_unretrieved() -> None:
    """A speculation that failed, or was cancelled, is never reported by the event loop
    ("Task exception was never retrieved", or an error in its done callback)."""
    reported: list[dict[str, Any]] = []

    async def failing() -> Generation:
        raise ConnectionError("upstream gone")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        failed = Speculation(failing())
        cancelled = Speculation(asyncio.sleep(10))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        del failed, cancelled
        gc.collect()

    run(scenario())
    assert reported == []


def test_output_guards_see_the_conversation_in_a_guard_thread() -> None:
    guard = WordGuard("nothing-here")
    pipeline, _, _ = make(Runtime(policy(), output_guards=[guard]), Backend(pieces=("a", "b")))
    run(pipeline.answer(chat("q"), "p"))
    run(collect(pipeline.answer_stream(chat("q"), "p")))
    assert [m for m, _ in guard.seen] == [[CONTEXT, {"role": "user", "content": "q"}]] * 4
    assert all(name.startswith("guard") for _, name in guard.seen)


def test_output_guard_time_and_failures_are_recorded_by_guard(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    failing = WordGuard("x", "broken", fails=True)
    pipeline, _, metrics = make(
        Runtime(policy(audit_prompts=True, fail_closed_as="block"), output_guards=[failing]),
        store=store)
    reply = run(pipeline.answer(chat(), "p"))
    decision = reply.decision
    assert reply.finish_reason == "content_filter"
    assert decision.blocking is not None and decision.blocking.guard == "broken:failed"
    assert decision.action == "guard_failed"
    assert sample(metrics, "unlearn_guard_failures_total", policy="p", guard="broken",
                  fail_mode="closed") == 1
    # A failed guard names no forget item; the audit record says so.
    [record] = store.audit()
    assert (record["action"], record["method"], record["target_id"], record["item"]) == (
        "guard_failed", "broken:failed", None, None)
    timed = make(Runtime(policy(), output_guards=[WordGuard("nothing", "out")]))
    run(timed[0].answer(chat(), "p"))
    assert sample(timed[2], "unlearn_guard_latency_seconds_sum", guard="out") == 0.001


def test_audited_prompts_join_the_turns_by_lines(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    pipeline, _, _ = make(Runtime(policy(audit_prompts=True), input_guards=[WordGuard(SECRET)]),
                          store=store)
    turns = [{"role": "user", "content": "Hello."}, {"role": "user", "content": SECRET}]
    run(pipeline.admit(replace(chat(), messages=turns), "p"))
    assert [r["prompt"] for r in store.audit()] == [f"Hello.\n{SECRET}"]


def test_streams_send_the_messages_and_default_to_stop() -> None:
    pipeline, backend, _ = make(Runtime(policy()), Backend(pieces=("ab", "cd"), finish=""))
    chunks = run(collect(pipeline.answer_stream(chat("q"), None)))
    assert backend.sent == [[{"role": "user", "content": "q"}]]
    # No guard: nothing held back, each piece relayed as it came; no finish reason -> "stop".
    assert chunks == [Chunk("ab"), Chunk("cd"), Chunk(usage=USAGE), Chunk(finish_reason="stop")]


def test_a_speculated_stream_calls_the_backend_once() -> None:
    async def scenario() -> Backend:
        pipeline, backend, _ = make(Runtime(policy(speculate=True)), Backend(pieces=("a",)))
        await collect(pipeline.answer_stream(chat(), "p"))
        return backend

    assert len(run(scenario()).sent) == 1
