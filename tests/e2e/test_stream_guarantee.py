"""The stream guarantee end to end: a client never receives what the policy would block.

A real upstream process (``benchmarks.stub_upstream --echo``) streams each request's own text
back, one token per SSE write with a pause between writes ("paced"), or cut into seeded random
writes that hold several events or part of one ("chunked"). The real server and ``openai``
backend run the Rowling policy's output filter in front of it, once per ``on_block`` ×
``stream_block``. For chat and completions the raw SSE bytes must show no forbidden word, the
text released before the block signal must end before the answer's first forbidden word, the
same request without streaming must get the same decision, and an answer with nothing to forget
must stream through unchanged, token by token.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from proxy.core.config import PolicyConfig, parse_config
from proxy.server import create_app
from tests.policies import FORBIDDEN, rowling_policy
from tests.servers import stub_upstream_process, thread_server
from tests.sse_client import Kind, Received, post, received, request_body

pytestmark = pytest.mark.slow

PREFIX = (
    "Here is a short story about a quiet village by the sea. Every morning the fishermen mend "
    "their nets on the harbour wall, and the children walk to school along the cliffs while "
    "the gulls circle above the boats. In the evening the baker sells the last of his bread, "
    "and the lighthouse keeper climbs the tower to light the lamp. "
)
ANSWERS = {
    "allowed": (
        "The Lord of the Rings was written by J. R. R. Tolkien, a professor of Anglo-Saxon at "
        "Oxford. He began it as a sequel to The Hobbit in 1937 and finished it twelve years "
        "later; it was published in three volumes in 1954 and 1955, and his son Christopher "
        "later edited The Silmarillion from his notes. The trilogy has sold well over one "
        "hundred million copies."
    ),
    # the name arrives token by token ("Joann", "e", " Rowli", "ng") after releasable text
    "leak-mid": PREFIX + (
        "Joanne Rowling was born in Yate, Gloucestershire, and worked for Amnesty "
        "International before writing the seven Harry Potter novels. She lives in Edinburgh."
    ),
    # the last token settles the alias: only the check of the complete text can see it
    "leak-end": PREFIX + "On his shelf sits a battered novel by J. K. Rowling",
}
LEAK_AT = {"leak-mid": ANSWERS["leak-mid"].index("Joanne"),
           "leak-end": ANSWERS["leak-end"].index("J. K.")}
MODES = list(itertools.product(("refuse", "error", "feign"), ("graceful", "strict")))
KINDS: tuple[Kind, ...] = ("chat", "completion")
UPSTREAMS = {"paced": ("--event-delay-ms", "20"),
             "chunked": ("--event-delay-ms", "20", "--chunk-seed", "7")}
DEFAULTS = PolicyConfig.model_fields
REFUSAL, FEIGN = DEFAULTS["refusal_text"].default, DEFAULTS["feign_text"].default


@dataclass(frozen=True)
class Case:
    answer: str  # a key of ANSWERS
    on_block: str
    stream_block: str
    kind: Kind
    upstream: str

    @property
    def model(self) -> str:
        return f"{self.on_block}-{self.stream_block}-{self.upstream}"

    @property
    def plain(self) -> Case:
        """The same request without streaming (chunking plays no part there)."""
        return Case(self.answer, self.on_block, self.stream_block, self.kind, "paced")


CASES = [Case(answer, on_block, stream_block, kind, upstream)
         for answer, (on_block, stream_block), kind, upstream
         in itertools.product(ANSWERS, MODES, KINDS, UPSTREAMS)]
BLOCKED = [c for c in CASES if c.answer != "allowed"]
ALLOWED = [c for c in CASES if c.answer == "allowed"]


@dataclass(frozen=True)
class Outcome:
    """A streamed request's raw body and parse, and the same request's plain answer."""

    body: bytes
    streamed: Received
    plain: Received
    plain_headers: dict[str, str]


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with stub_upstream_process("--echo", *UPSTREAMS["paced"]) as paced, \
            stub_upstream_process("--echo", *UPSTREAMS["chunked"]) as chunked:
        upstream = {"paced": paced, "chunked": chunked}
        policies = {f"{o}-{s}": rowling_policy([{"type": "output_filter"}], on_block=o,
                                               stream_block=s) for o, s in MODES}
        config = parse_config({
            "server": {"state_dir": str(tmp_path_factory.mktemp("stream"))},
            "models": {f"{p}-{u}": {"backend": "openai", "base_url": f"{url}/v1"}
                       for p in policies for u, url in upstream.items()},
            "policies": policies,
            "routing": {"models": {f"{p}-{u}": p for p in policies for u in upstream}},
        })
        app = create_app(config)
        for policy in app.state.holder.current.policies.values():
            (guard,) = policy.output_guards
            # the proxy may release part of PREFIX before the forget text arrives
            assert guard.hold_back_chars + 40 < len(PREFIX), guard
        with thread_server(app) as url:
            yield url


@pytest.fixture(scope="module")
def outcomes(proxy_url: str) -> dict[Case, Outcome]:
    """Every case, streamed and plain, requested concurrently (the streams are mostly pauses)."""

    def run(case: Case) -> Outcome:
        text = ANSWERS[case.answer]
        raw = post(proxy_url, case.kind, request_body(case.kind, case.model, text, stream=True))
        plain_body = request_body(case.kind, case.plain.model, text, stream=False)
        plain = post(proxy_url, case.kind, plain_body)
        return Outcome(raw.body, received(raw, case.kind, stream=True),
                       received(plain, case.kind, stream=False), plain.headers)

    with ThreadPoolExecutor(max_workers=12) as pool:
        return dict(zip(CASES, pool.map(run, CASES), strict=True))


def _decision(got: Received, answer: str) -> tuple[str, str]:
    """(allow | refuse | feign | error | garbled, the answer's text received before the block)."""
    if got.error is not None:
        return "error", got.text
    *before, last = got.contents or ("",)
    if got.finish_reason == "stop" and got.text == answer:
        return "allow", got.text
    if (got.finish_reason, last) in (("content_filter", REFUSAL), ("stop", FEIGN)):
        return ("refuse" if last == REFUSAL else "feign"), "".join(before)
    return "garbled", got.text


def _case_id(case: Case) -> str:
    return f"{case.answer}-{case.model}-{case.kind}"


@pytest.mark.parametrize("case", BLOCKED, ids=_case_id)
def test_streamed_forget_text_never_reaches_the_client(
    outcomes: dict[Case, Outcome], case: Case
) -> None:
    outcome, answer = outcomes[case], ANSWERS[case.answer]
    leaked = [word for word in FORBIDDEN if word.encode() in outcome.body.lower()]
    assert not leaked, outcome.body.decode()
    decision, released = _decision(outcome.streamed, answer)
    strict = case.on_block == "error" or case.stream_block == "strict"
    assert decision == ("error" if strict else case.on_block), outcome.streamed
    # a mid-stream block: some text went out first, all of it from before the forget text
    assert released and answer[: LEAK_AT[case.answer]].startswith(released), released
    if strict:
        error = outcome.streamed.error or {}
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error", None, "content_filter")
        assert "blocked by policy" in error["message"]
    plain_decision, plain_released = _decision(outcome.plain, answer)
    assert (plain_decision, plain_released) == (case.on_block, "")
    assert outcome.plain_headers["x-should-retry"] == "false"


@pytest.mark.parametrize("case", ALLOWED, ids=_case_id)
def test_allowed_answer_streams_unchanged_token_by_token(
    outcomes: dict[Case, Outcome], case: Case
) -> None:
    outcome, answer = outcomes[case], ANSWERS[case.answer]
    assert _decision(outcome.streamed, answer) == ("allow", answer)
    assert _decision(outcome.plain, answer) == ("allow", answer)
    assert "x-should-retry" not in outcome.plain_headers
    # paced reads reach the client as separate content events, not one answer at the end
    # (a loaded machine may join some reads, so only "more than one" is asserted)
    assert len(outcome.streamed.contents) >= 2, outcome.streamed.contents
