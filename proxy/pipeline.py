"""One request through a policy: input guards, context builders, backend, output guards.

The lifecycle is written once, here: :meth:`Pipeline.answer` (a complete answer) and
:meth:`Pipeline.answer_stream` (a stream) speculate, admit, block or generate, run the output
guards and audit, and render a block the same way on either side. The server only translates
HTTP to a :class:`Request` and a :class:`Reply` (or an :class:`AnswerStream`) back; the
harness and the benchmark scripts call the same two methods, so a benchmark number describes
what the server does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, TypeVar

from filters.batching import Unavailable
from filters.base import InputGuard, Match, OutputGuard, Verdict
from proxy.core.messages import message_text
from proxy.backends.base import Backend
from proxy import passthrough
from proxy.core.types import NO_EXTRA, Choice, Chunk, Extra, Generation, GenerationParams, Usage
from proxy.release import HeldChoice, whole_text
from proxy.core.config import PolicyConfig
from proxy.core.errors import GuardFailedError, PolicyBlockedError
from proxy.metrics import Metrics
from proxy.store import AuditRecord, Store

log = logging.getLogger("unlearn_proxy.pipeline")

# Guard work runs here, never on the event loop. Guards mostly wait on the shared embedding
# batcher, so many threads let concurrent requests meet in one batch.
_GUARD_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="guard")


async def in_guard_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking guard work in the guard thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_GUARD_THREADS, fn, *args)

Kind = Literal["chat", "completion"]
T = TypeVar("T")


class PolicyRuntime(Protocol):
    """What the pipeline needs of a compiled policy (:class:`proxy.policy.CompiledPolicy`)."""

    name: str
    config: PolicyConfig

    @property
    def input_guards(self) -> Sequence[InputGuard]: ...

    @property
    def output_guards(self) -> Sequence[OutputGuard]: ...

    def release_limit(self, text: str) -> int:
        """How much of a stream's text so far may reach the client."""
        ...

    def build_context(
        self, request: Request, *, detected: bool, count_tokens: Callable[[str], int]
    ) -> tuple[Request, int]:
        """Apply the context methods; returns the new request and the prompt tokens added."""
        ...


# Request fields besides the messages whose text the model reads: tool and function
# definitions, a structured-output schema, the completion ``suffix``.
MODEL_READ = ("tools", "functions", "response_format", "suffix")


@dataclass(frozen=True)
class Request:
    """A chat or completion request as the pipeline sees it."""

    kind: Kind
    model: str
    messages: list[dict[str, Any]]
    params: GenerationParams
    request_id: str
    prompt: str | None = None

    @cached_property
    def guard_messages(self) -> list[dict[str, Any]]:
        """What guards read (built once per request, then reused by every guard call of its
        stream): the chat, or the completion prompt as one user turn, then one
        ``request`` pseudo-turn holding the other fields the model reads (:data:`MODEL_READ`)."""
        turns = self.messages
        if self.kind == "completion":
            turns = [{"role": "user", "content": self.prompt or ""}]
        read = {key: self.params.extra[key] for key in MODEL_READ if key in self.params.extra}
        return [*turns, {"role": "request", **read}] if read else turns


@dataclass(frozen=True)
class Decision:
    """What a policy decided on a request: the input side's verdicts, and the verdict that
    blocked it (input or output side), if any. Never changed: a later block is a new one."""

    policy: str | None
    verdicts: list[Verdict] = field(default_factory=list)
    blocking: Verdict | None = None
    guard_ms: float = 0.0
    added_prompt_tokens: int = 0

    @property
    def action(self) -> str:
        """``allow``, ``block``, or ``guard_failed`` (a failed guard blocked, fail closed)."""
        return "allow" if self.blocking is None else self.blocking.outcome

    @property
    def failed_guards(self) -> list[str]:
        """The guards that raised (under ``fail_mode: open`` the request went on without them)."""
        return [v.guard for v in self.verdicts if v.failed]


def decision_headers(decision: Decision, request_id: str) -> dict[str, str]:
    """The ``x-request-id`` and ``x-unlearn-*`` headers of an answer (and ``x-should-retry:
    false`` on a block), as every endpoint sends them."""
    headers = {
        "x-request-id": request_id,
        "x-unlearn-decision": decision.action,
        "x-unlearn-overhead-ms": f"{decision.guard_ms:.2f}",
    }
    if decision.policy:
        headers["x-unlearn-policy"] = decision.policy
    if decision.added_prompt_tokens:
        headers["x-unlearn-icul-tokens"] = str(decision.added_prompt_tokens)
    if decision.blocking is not None:
        headers["x-should-retry"] = "false"
    if decision.failed_guards:
        headers["x-unlearn-guard-failed"] = ",".join(dict.fromkeys(decision.failed_guards))
    return headers


_END = object()  # the end of a read-ahead stream


class Speculation:
    """An upstream call started before the input guards decided (policy ``speculate: true``).

    A plain call runs as a task; a stream is read ahead by a task into a bounded queue, so the
    task owns the upstream connection from start to end. :meth:`cancel` aborts either.
    """

    def __init__(self, call: Awaitable[Generation] | AsyncIterator[Chunk]) -> None:
        self._queue: asyncio.Queue[Any] | None = None
        if isinstance(call, AsyncIterator):
            self._queue = asyncio.Queue(maxsize=256)
            self.task: asyncio.Task[Any] = asyncio.create_task(self._read_ahead(call))
        else:
            self.task = asyncio.ensure_future(call)
        self.task.add_done_callback(_retrieve)

    async def _read_ahead(self, source: AsyncIterator[Chunk]) -> None:
        assert self._queue is not None
        try:
            async for chunk in source:
                await self._queue.put(chunk)
        except Exception as exc:  # handed to the reader, who raises it
            await self._queue.put(exc)
        else:
            await self._queue.put(_END)

    async def generation(self) -> Generation:
        """The answer of a plain call."""
        result: Generation = await self.task
        return result

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The chunks of a stream, as they arrive; leaving early cancels the upstream."""
        assert self._queue is not None
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.task.cancel()

    def cancel(self) -> None:
        self.task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen (a cancelled speculation's is not wanted)."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class Answer:
    """What the client gets when a policy blocks: text plus finish reason."""

    text: str
    finish_reason: str


def block_answer(policy: PolicyConfig, verdict: Verdict) -> Answer:
    """The refusal or feigned answer for a block; raises for ``on_block: error``."""
    if policy.on_block == "error":
        raise PolicyBlockedError(
            f"the request was blocked by policy ({verdict.guard})",
        )
    if policy.on_block == "feign":
        return Answer(policy.feign_text, "stop")
    return Answer(policy.refusal_text, "content_filter")


class Pipeline:
    """Runs requests for one config generation (policies + backends)."""

    def __init__(
        self,
        *,
        backends: dict[str, Backend],
        policies: dict[str, PolicyRuntime],
        metrics: Metrics,
        store: Store | None,
    ) -> None:
        self.backends = backends
        self.policies = policies
        self.metrics = metrics
        self.store = store

    # ------------------------------------------------------------------ input side

    async def admit(
        self, request: Request, policy_name: str | None, speculation: Speculation | None = None
    ) -> tuple[Decision, Request]:
        """Run input guards and context builders; returns the decision and the request to send.
        A ``speculation`` (the upstream call already started) is cancelled when it blocks."""
        if policy_name is None:
            return Decision(None), request
        policy = self.policies[policy_name]
        started = time.perf_counter()
        try:
            decision, request = await in_guard_thread(self._input_side, policy, request)
        except BaseException:
            if speculation is not None:
                speculation.cancel()
            raise
        decision = replace(decision, guard_ms=(time.perf_counter() - started) * 1000)
        if speculation is not None:
            blocked = decision.blocking is not None
            if blocked:
                speculation.cancel()
            outcome = "cancelled" if blocked else "used"
            self.metrics.speculations.labels(policy.name, outcome).inc()
        if decision.added_prompt_tokens:
            self.metrics.icul_tokens.observe(decision.added_prompt_tokens)
        return decision, request

    def _input_side(self, policy: PolicyRuntime, request: Request) -> tuple[Decision, Request]:
        verdicts = self._run_input_guards(policy, request)
        blocking = next((v for v in verdicts if v.is_block), None)
        if blocking is not None:
            self._audit(policy, request, blocking)
            return Decision(policy.name, verdicts, blocking), request
        detected = any(v.action == "rewrite" for v in verdicts)
        count_tokens = self.backends[request.model].count_tokens
        request, added = policy.build_context(request, detected=detected, count_tokens=count_tokens)
        return Decision(policy.name, verdicts, added_prompt_tokens=added), request

    def _run_input_guards(self, policy: PolicyRuntime, request: Request) -> list[Verdict]:
        verdicts: list[Verdict] = []
        messages = request.guard_messages
        for guard in policy.input_guards:
            verdict = self._guarded(
                policy, request, guard.name, lambda g=guard: g.check_input(messages))
            verdicts.append(verdict)
            self._count(policy, verdict, verdict.action)
            self.metrics.guard_latency.labels(verdict.guard).observe(verdict.elapsed_ms / 1000)
            if verdict.is_block:
                break
        return verdicts

    def _count(self, policy: PolicyRuntime, verdict: Verdict, action: str) -> None:
        """Count a guard's decision, and a block by the view of the text it matched in."""
        self.metrics.decisions.labels(policy.name, verdict.guard, action).inc()
        if verdict.is_block and verdict.match is not None:
            self.metrics.transforms.labels(
                policy.name, verdict.guard, verdict.match.transform).inc()

    def _guarded(self, policy: PolicyRuntime, request: Request, name: str, check: Any) -> Verdict:
        """Run one guard. One that raises is an outage, never a decision on the text: it is
        logged, counted and audited as ``guard_failed``; under ``fail_mode: open`` the request
        goes on without it, under ``closed`` it raises :class:`GuardFailedError` (503, retried)
        or, with ``fail_closed_as: block``, returns a blocking verdict marked ``failed``."""
        try:
            verdict: Verdict = check()
            return verdict
        except Exception as exc:
            config = policy.config
            # an outage is one line; anything else is a bug, with its traceback
            log.warning("guard %s of policy %s failed (fail_mode=%s): %s", name, policy.name,
                        config.fail_mode, exc, exc_info=not isinstance(exc, Unavailable))
            self.metrics.guard_failures.labels(policy.name, name, config.fail_mode).inc()
            failed = Verdict("allow" if config.fail_mode == "open" else "block",
                             guard=f"{name}:failed", failed=True)
            if failed.is_block and config.fail_closed_as == "block":
                return failed  # audited by the caller, as every block
            self._audit(policy, request, failed)
            if failed.is_block:
                raise GuardFailedError(
                    f"the guard {name} of policy {policy.name} is unavailable; retry later",
                    headers={"x-should-retry": "true"},
                ) from exc
            return failed

    def _audit(self, policy: PolicyRuntime, request: Request, verdict: Verdict | None) -> None:
        if self.store is None or verdict is None:
            return
        match: Match | None = verdict.match
        prompt = None
        if policy.config.audit_prompts:
            prompt = "\n".join(message_text(m) for m in request.guard_messages)
        self.store.append_audit(
            AuditRecord(
                request_id=request.request_id,
                action=verdict.outcome,
                policy=policy.name,
                method=verdict.guard,
                target_id=match.target_id if match else None,
                item=match.item if match else None,
                score=verdict.score,
                prompt=prompt,
                transform=match.transform if match else None,
            )
        )

    # ------------------------------------------------------------------ the lifecycle

    async def answer(self, request: Request, policy_name: str | None) -> Reply:
        """The complete answer to ``request`` under ``policy_name`` (None: no policy).

        Starts the upstream call early when the policy speculates, admits the request, answers
        a block without calling the backend (usage 0; one refusal per choice asked for), else
        generates and runs the output guards on each choice's whole guard text
        (:func:`proxy.release.whole_text`: its text and tool calls); a blocked choice is
        replaced by the block answer, the others pass. Raises :class:`PolicyBlockedError` for
        ``on_block: error`` and :class:`GuardFailedError` for an outage under
        ``fail_mode: closed``.
        """
        speculation = self._speculate(request, policy_name, stream=False)
        decision, prepared = await self.admit(request, policy_name, speculation)
        policy = self.policies.get(decision.policy or "")
        if policy is not None and decision.blocking is not None:
            answer = block_answer(policy.config, decision.blocking)
            refusals = tuple(Choice(answer.text, answer.finish_reason, index=index)
                             for index in range(request.params.n))
            return Reply(refusals, Usage(0, 0), decision)
        if speculation is not None:
            generation = await speculation.generation()
        else:
            generation = await self._call(prepared)
        if policy is None or not policy.output_guards:
            return Reply(tuple(Choice(g.text, g.finish_reason, g.extra, g.index)
                               for g in generation.choices), generation.usage, decision)
        choices = []
        for generated in generation.choices:
            text = whole_text(generated.text, generated.extra.message)
            verdict = await in_guard_thread(self._check_output, policy, prepared, text, True)
            if verdict is None:
                choices.append(Choice(generated.text, generated.finish_reason,
                                      passthrough.guarded(generated.extra), generated.index))
                continue
            self._audit(policy, prepared, verdict)
            answer = block_answer(policy.config, verdict)
            choices.append(Choice(answer.text, answer.finish_reason,
                                  passthrough.blocked(generated.extra), generated.index))
            if decision.blocking is None:
                decision = replace(decision, blocking=verdict)
        return Reply(tuple(choices), generation.usage, decision)

    def answer_stream(self, request: Request, policy_name: str | None) -> AnswerStream:
        """The answer to ``request`` as a stream of chunks (see :class:`AnswerStream`)."""
        return AnswerStream(self, request, policy_name)

    def _speculate(
        self, request: Request, policy_name: str | None, *, stream: bool
    ) -> Speculation | None:
        """The upstream call, started now, when the policy speculates (else None)."""
        policy = self.policies.get(policy_name or "")
        if policy is None or not policy.config.speculate:
            return None
        return Speculation(self._source(request) if stream else self._call(request))

    async def _call(self, request: Request) -> Generation:
        backend = self.backends[request.model]
        started = time.perf_counter()
        if request.kind == "chat":
            generation = await backend.chat(request.messages, request.params)
        else:
            generation = await backend.complete(request.prompt or "", request.params)
        self.metrics.upstream_latency.labels(request.model).observe(time.perf_counter() - started)
        return generation

    def _source(self, request: Request) -> AsyncIterator[Chunk]:
        backend = self.backends[request.model]
        if request.kind == "chat":
            return backend.stream_chat(request.messages, request.params)
        return backend.stream_complete(request.prompt or "", request.params)

    def _check_output(
        self, policy: PolicyRuntime, request: Request, text: str, final: bool,
        failed: set[str] | None = None,
    ) -> Verdict | None:
        """The first blocking verdict of the output guards, or None. A guard that failed under
        ``fail_mode: open`` is added to ``failed`` (one stream's set) and not called again for
        that stream: it would fail again, each time waiting, logging and auditing."""
        messages = request.guard_messages
        for guard in policy.output_guards:
            if failed is not None and guard.name in failed:
                continue
            verdict = self._guarded(
                policy, request, guard.name,
                lambda g=guard: g.check_output(messages, text, final=final),
            )
            self.metrics.guard_latency.labels(verdict.guard).observe(verdict.elapsed_ms / 1000)
            if verdict.is_block:
                self._count(policy, verdict, "block")
                return verdict
            if verdict.failed and failed is not None:
                failed.add(guard.name)
        return None


@dataclass(frozen=True)
class Reply:
    """A complete answer: its choices (one unless ``n > 1``), the usage, and the decision
    behind it (the server's body and headers); a block of any choice is the decision's."""

    choices: tuple[Choice, ...]
    usage: Usage
    decision: Decision

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.choices[0].text

    @property
    def finish_reason(self) -> str:
        """The first choice's finish reason."""
        return self.choices[0].finish_reason

    @property
    def blocked(self) -> bool:
        """Whether a policy blocked the request (input side) or an answer (output side)."""
        return self.decision.blocking is not None


class AnswerStream:
    """The streaming lifecycle, as an async iterator of :class:`Chunk`.

    Iterating speculates, admits and streams. Without output guards the upstream's chunks pass
    as they come. With them, each choice's output is held (:class:`proxy.release.HeldChoice`):
    the guards read its guard text (content and tool calls) before the client sees any of it,
    and only what the policy's :meth:`release_limit` allows goes out, so a leak is blocked
    before any of it is sent. A block (either side) ends the choice with the block answer
    (every choice, on the input side), or raises :class:`PolicyBlockedError` for strict or
    ``on_block: error`` policies; the other choices of an ``n > 1`` stream go on.
    :attr:`decision` is the input side's once the first chunk is out (the server's headers),
    and the blocking decision once an output guard blocks. A choice the upstream left without
    a finish reason ends with ``stop``; the usage comes last, in a chunk of its own.
    """

    def __init__(self, pipeline: Pipeline, request: Request, policy_name: str | None) -> None:
        self.pipeline = pipeline
        self.request = request
        self.policy_name = policy_name
        self.decision = Decision(policy_name)
        self._chunks = self._run()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks

    async def _run(self) -> AsyncIterator[Chunk]:
        pipeline = self.pipeline
        speculation = pipeline._speculate(self.request, self.policy_name, stream=True)
        self.decision, prepared = await pipeline.admit(self.request, self.policy_name, speculation)
        policy = pipeline.policies.get(self.decision.policy or "")
        if policy is not None and self.decision.blocking is not None:
            answer = block_answer(policy.config, self.decision.blocking)
            for index in range(self.request.params.n):
                yield Chunk(answer.text, index=index)
                yield Chunk(finish_reason=answer.finish_reason, usage=Usage(0, 0), index=index)
            return
        source = speculation.chunks() if speculation is not None else pipeline._source(prepared)
        started = time.perf_counter()
        if policy is None or not policy.output_guards:
            chunks = self._passed(source)
        else:
            chunks = _GuardedStream(self, policy, prepared).run(source)
        async for chunk in chunks:
            yield chunk
        pipeline.metrics.upstream_latency.labels(prepared.model).observe(
            time.perf_counter() - started)

    async def _passed(self, source: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """The upstream's chunks as they come (no output guard)."""
        seen: set[int] = set()
        finished: set[int] = set()
        async for chunk in source:
            if chunk.finish_reason:
                finished.add(chunk.index)
            elif not (chunk.text or chunk.extra or chunk.usage):
                continue
            seen.add(chunk.index)
            yield chunk
        for index in sorted(seen - finished) or ([] if finished else [0]):
            yield Chunk(finish_reason="stop", index=index)

    def block(self, policy: PolicyRuntime, request: Request, verdict: Verdict) -> Answer:
        """Record an output-side block (the decision, the audit); the block answer, or raise
        for a strict or ``on_block: error`` policy."""
        if self.decision.blocking is None:
            self.decision = replace(self.decision, blocking=verdict)
        self.pipeline._audit(policy, request, verdict)
        if policy.config.stream_block == "strict" or policy.config.on_block == "error":
            raise PolicyBlockedError(f"the response was blocked by policy ({verdict.guard})")
        return block_answer(policy.config, verdict)


class _GuardedStream:
    """One stream under output guards: each choice held, checked and released on its own."""

    def __init__(self, owner: AnswerStream, policy: PolicyRuntime, request: Request) -> None:
        self.owner = owner
        self.policy = policy
        self.request = request
        self.held: dict[int, HeldChoice] = {}
        self.ended: set[int] = set()
        self.last_extra: dict[int, Extra] = {}  # each choice's last fields, for a block
        self.failed: set[str] = set()  # guards that failed open: not called again
        self.limits: dict[int, int] = {}  # each choice's release limit, as last judged
        self.blocks = 0

    async def _check(self, text: str, final: bool) -> Verdict | None:
        return await in_guard_thread(self.owner.pipeline._check_output, self.policy,
                                     self.request, text, final, self.failed)

    def _judge(self, text: str) -> tuple[Verdict | None, int]:
        """(In the guard thread.) The output guards' verdict on a stream's text so far, and
        how much of it may go out. A release limit the guards cannot compute (an outage)
        holds the rest back: the final check decides on it, under the policy's fail mode."""
        verdict = self.owner.pipeline._check_output(self.policy, self.request, text, False,
                                                    self.failed)
        if verdict is not None:
            return verdict, 0
        try:
            return None, self.policy.release_limit(text)
        except Exception as exc:
            if not self.failed:
                log.warning("policy %s: the stream's release limit failed, holding the rest "
                            "for the final check: %s", self.policy.name, exc)
            self.failed.add("release_limit")
            return None, 0

    async def run(self, source: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        usage: Usage | None = None  # of a chunk without a finish reason: it goes out last
        async for chunk in source:
            if chunk.usage is not None and not chunk.finish_reason:
                usage = chunk.usage
            index = chunk.index
            if index in self.ended:
                continue
            choice = self.held.get(index) or self.held.setdefault(index, HeldChoice(index))
            extra = passthrough.guarded(chunk.extra)
            self.last_extra[index] = extra or self.last_extra.get(index, NO_EXTRA)
            if chunk.finish_reason:
                choice.add(replace(chunk, extra=extra), with_fields=False)
                for out in await self._finish(choice, chunk.finish_reason, extra, chunk.usage):
                    yield out
            elif chunk.text or extra:
                before = len(choice.view.text)
                choice.add(replace(chunk, extra=extra))
                verdict = None
                if len(choice.view.text) > before:
                    verdict, self.limits[index] = await in_guard_thread(
                        self._judge, choice.view.text)
                pieces = (self._blocked(choice, verdict) if verdict is not None
                          else choice.release(self.limits.get(index, 0)))
                for out in pieces:
                    yield out
            if self.blocks and len(self.ended) >= self.request.params.n:
                break  # a block ended the last choice (an n=1 stream): stop reading
        for index in sorted(self.held.keys() - self.ended) or ([] if self.ended else [0]):
            choice = self.held.get(index) or HeldChoice(index)
            for out in await self._finish(choice, "stop", NO_EXTRA):
                yield out
        if usage is not None:
            yield Chunk(usage=usage)

    async def _finish(self, choice: HeldChoice, finish: str, extra: Extra,
                      usage: Usage | None = None) -> list[Chunk]:
        """A choice's end: the final check on its whole guard text, then the rest of it and
        the finish reason (with the finish event's fields and usage), or the block answer."""
        verdict = await self._check(choice.view.close(), True)
        if verdict is not None:
            return self._blocked(choice, verdict, extra, usage)
        self.ended.add(choice.index)
        return [*choice.release(len(choice.view.text)),
                Chunk(finish_reason=finish, usage=usage, extra=extra, index=choice.index)]

    def _blocked(self, choice: HeldChoice, verdict: Verdict, extra: Extra = NO_EXTRA,
                 usage: Usage | None = None) -> list[Chunk]:
        """The block answer ending ``choice``: its text and finish reason, with the metadata
        of the choice's last fields (no logprobs, no message fields)."""
        self.ended.add(choice.index)
        self.blocks += 1
        answer = self.owner.block(self.policy, self.request, verdict)
        kept = passthrough.blocked(extra or self.last_extra.get(choice.index, NO_EXTRA))
        return [Chunk(answer.text, extra=kept, index=choice.index),
                Chunk(finish_reason=answer.finish_reason, usage=usage, extra=kept,
                      index=choice.index)]
