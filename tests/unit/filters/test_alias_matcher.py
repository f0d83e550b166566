from __future__ import annotations

import time

import pytest

from filters.alias_matcher import AliasEntry, AliasGuard, AliasTable, alias_verdict
from filters.base import Match, Verdict
from filters.normalize import tokenize
from proxy.config import ForgetTargetConfig

TARGETS = [
    ForgetTargetConfig(id="rowling", name="J. K. Rowling", aliases=["Robert Galbraith"]),
    ForgetTargetConfig(id="ann", name="Ann"),
    ForgetTargetConfig(id="marquez", name="Gabriel García Márquez", aliases=["Gabo"]),
    ForgetTargetConfig(id="lily", name="Lily Evans"),
]


@pytest.fixture(scope="module")
def guard() -> AliasGuard:
    return AliasGuard(AliasTable.from_targets(TARGETS))


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("Tell me about JK Rowling.", "rowling"),
        ("what did j.k.rowling write", "rowling"),
        ("J. K. ROWLING's first book?", "rowling"),
        ("Books by R0bert Galbra1th", "rowling"),
        ("Ann wrote it", "ann"),
        ("I asked ann.", "ann"),
        ("Gabriel Garcia Marquez's novels", "marquez"),
        ("GABRIEL GARCÍA MÁRQUEZ", "marquez"),
        ("what did gabo write?", "marquez"),
        ("L1ly Evans", "lily"),
        ("1ily evans", "lily"),
    ],
)
def test_alias_hits(guard: AliasGuard, text: str, target: str) -> None:
    verdict = guard.check_input([{"role": "user", "content": text}])
    assert verdict.is_block
    assert verdict.match is not None and verdict.match.target_id == target


@pytest.mark.parametrize(
    "text",
    [
        "The Annual report is due.",
        "Anne of Green Gables",
        "Joanne wrote many books",
        "Rowling hills in the countryside",  # the surname alone is not an alias
        "Gabriel is a common name",
        "Lily pads float; Evans is a surname.",
        "Robert went to Galbraith street",
    ],
)
def test_alias_misses(guard: AliasGuard, text: str) -> None:
    assert not guard.check_input([{"role": "user", "content": text}]).is_block


def test_only_user_turns_are_checked(guard: AliasGuard) -> None:
    messages = [
        {"role": "system", "content": "Never mention Ann."},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ]
    assert not guard.check_input(messages).is_block
    messages.append({"role": "user", "content": [{"type": "text", "text": "and Gabo?"}]})
    assert guard.check_input(messages).match.target_id == "marquez"  # type: ignore[union-attr]


def test_output_prefixes_are_monotone(guard: AliasGuard) -> None:
    text = "The Annual meeting of Ann and her friends."
    blocked = [guard.check_output([], text[:i]).is_block for i in range(len(text) + 1)]
    first = blocked.index(True)
    assert text[:first].endswith("Ann ")
    assert all(blocked[first:])
    assert not guard.check_output([], "The Annual").is_block
    assert guard.check_output([], "They met Ann", final=True).is_block
    assert not guard.check_output([], "They met Ann").is_block


def test_hold_back_covers_the_longest_alias(guard: AliasGuard) -> None:
    assert guard.hold_back_chars >= 2 * len("Gabriel García Márquez")


def test_many_aliases_are_fast() -> None:
    table = AliasTable((f"t{i}", f"Person Number{i} Smith") for i in range(2000))
    tokens = tokenize("word " * 5000 + "person number1999 smith")
    started = time.perf_counter()
    hit = table.find(tokens)
    assert hit is not None and hit.target_id == "t1999"
    assert time.perf_counter() - started < 0.5


def test_a_hit_is_a_full_block_naming_target_alias_and_tokens(guard: AliasGuard) -> None:
    verdict = guard.check_input([{"role": "user", "content": "Who is R0bert Galbra1th?"}])
    match = Match("rowling", "alias:Robert Galbraith", "robert galbraith")
    assert verdict == Verdict("block", "aliases", 1.0, 1.0, match, elapsed_ms=verdict.elapsed_ms)
    assert verdict.elapsed_ms > 0
    output = guard.check_output([], "It was Ann. ")
    assert output == Verdict(
        "block", "aliases", 1.0, 1.0, Match("ann", "alias:Ann", "ann"), elapsed_ms=output.elapsed_ms
    )
    assert output.elapsed_ms > 0


def test_a_miss_is_an_allow_below_the_alias_threshold(guard: AliasGuard) -> None:
    for verdict in (
        guard.check_input([{"role": "user", "content": "The Annual report"}]),
        guard.check_output([], "The Annual report. ", final=True),
    ):
        assert verdict == Verdict("allow", "aliases", 0.0, 1.0, elapsed_ms=verdict.elapsed_ms)
        assert verdict.elapsed_ms > 0


def test_verdicts_carry_the_guard_name() -> None:
    named = AliasGuard(AliasTable.from_targets(TARGETS), name="names")
    assert named.name == "names"
    assert named.check_input([{"role": "user", "content": "Gabo"}]).guard == "names"
    assert named.check_input([{"role": "user", "content": "Gabriel"}]).guard == "names"
    assert named.check_output([], "Gabo wrote. ").guard == "names"
    assert named.check_output([], "Gabriel wrote. ").guard == "names"


def test_alias_verdict_times_from_the_given_start() -> None:
    entry = AliasEntry("ann", "Ann", ("ann",))
    for hit in (entry, None):
        elapsed_ms = alias_verdict("aliases", hit, time.perf_counter() - 10.0).elapsed_ms
        assert 10_000 <= elapsed_ms < 10_010  # seconds since ``started``, in milliseconds


def test_hold_back_is_twice_the_longest_alias_plus_eight(guard: AliasGuard) -> None:
    assert guard.hold_back_chars == 2 * len("Gabriel García Márquez") + 8
    assert AliasGuard(AliasTable([])).hold_back_chars == 0
