from __future__ import annotations

import time

import pytest

from filters.alias_matcher import (
    AliasEntry, AliasGuard, AliasScanner, AliasTable, alias_match, alias_verdict,
)
from filters.base import Match, Message, Verdict
from filters.normalize import tokenize
from proxy.core.config import ForgetTargetConfig

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


HELLO = {"role": "user", "content": [{"type": "text", "text": "hello"}]}


@pytest.mark.parametrize(
    "turn",
    [
        {"role": "system", "content": "Never mention Gabo."},
        {"role": "developer", "content": [{"type": "text", "text": "Talk about Gabo."}]},
        {"role": "assistant", "content": "Gabo wrote it."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "lookup", "arguments": '{"author": "Gabo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "born: Aracataca (Gabo)"},
        {"role": "user", "name": "Gabo", "content": "hello"},
        {"role": "user", "content": [{"type": "file", "file": {"filename": "gabo.pdf"}}]},
        {"role": "request", "tools": [{"type": "function", "function": {
            "name": "f", "description": "Facts on Gabo"}}]},
        {"role": "request", "suffix": "… as Gabo said."},
    ],
    ids=["system", "developer-part", "assistant", "tool-call", "tool-result", "name",
         "file-part", "tool-definition", "suffix"],
)
def test_every_text_the_model_reads_is_checked(guard: AliasGuard, turn: Message) -> None:
    verdict = guard.check_input([turn, HELLO])
    assert verdict.match is not None and verdict.match.target_id == "marquez"
    assert not guard.check_input([HELLO]).is_block


def test_ids_types_and_binary_payloads_are_not_read_as_text(guard: AliasGuard) -> None:
    turn = {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x.test/gabo.png", "detail": "Gabo"}},
        {"type": "input_audio", "input_audio": {"data": "Gabo", "format": "wav"}}]}
    tool = {"role": "tool", "tool_call_id": "Gabo", "content": "ok"}
    assert not guard.check_input([turn, tool, HELLO]).is_block


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
    for hit in (alias_match(entry), None):
        elapsed_ms = alias_verdict("aliases", hit, time.perf_counter() - 10.0).elapsed_ms
        assert 10_000 <= elapsed_ms < 10_010  # seconds since ``started``, in milliseconds


def test_hold_back_is_twice_the_longest_alias_plus_eight(guard: AliasGuard) -> None:
    assert guard.hold_back_chars == 2 * len("Gabriel García Márquez") + 8
    assert AliasGuard(AliasTable([])).hold_back_chars == 0


def _scan(table: AliasTable, *pieces: str) -> list[str | None]:
    """The target each feed of one scanner reports (None: no alias ends in that piece)."""
    scanner = AliasScanner(table)
    hits = [scanner.feed(tokenize(piece)) for piece in pieces]
    return [None if hit is None else hit.target_id for hit in hits]


@pytest.mark.parametrize(
    "pieces",
    [
        ("Gabriel", "García", "Márquez"),
        ("Gabriel García", "Márquez"),
        ("Gabriel", "García Márquez"),
        ("Gabriel", "", "García", "", "Márquez"),
    ],
)
def test_scanner_finds_an_alias_split_across_feeds(pieces: tuple[str, ...]) -> None:
    table = AliasTable.from_targets(TARGETS)
    assert table.max_tokens == 3
    assert _scan(table, *pieces) == [None] * (len(pieces) - 1) + ["marquez"]


def test_scanner_keeps_enough_tail_for_two_token_aliases() -> None:
    table = AliasTable([("lily", "Lily Evans")])
    assert table.max_tokens == 2
    assert _scan(table, "Lily", "Evans") == [None, "lily"]
    assert _scan(table, "we met", "Lily", "and", "Evans") == [None, None, None, None]


def test_scanner_reports_an_alias_only_in_the_feed_where_it_ends() -> None:
    table = AliasTable.from_targets(TARGETS)
    assert _scan(table, "Ann", "met", "them") == ["ann", None, None]
    assert _scan(table, "Ann", "and Gabo", "wrote") == ["ann", "marquez", None]
    assert _scan(AliasTable([]), "Ann", "Gabo") == [None, None]


def test_find_skips_aliases_ending_by_min_end() -> None:
    table = AliasTable.from_targets(TARGETS)
    tokens = tokenize("Ann met Gabo")
    assert table.find(tokens) == AliasEntry("ann", "Ann", ("ann",))
    assert table.find(tokens, min_end=1) == AliasEntry("marquez", "Gabo", ("gabo",))
    assert table.find(tokens, min_end=2) == AliasEntry("marquez", "Gabo", ("gabo",))
    assert table.find(tokens, min_end=3) is None
    assert table.find(tokenize("Ann met"), min_end=1) is None


def _found(table: AliasTable, text: str) -> str | None:
    hit = table.find(tokenize(text))
    return None if hit is None else hit.target_id


def test_the_longest_alias_at_the_earliest_start_wins() -> None:
    table = AliasTable([("short", "Lily"), ("long", "Lily Evans"), ("gabo", "Gabo")])
    assert _found(table, "Lily Evans") == "long"
    assert _found(table, "I met Lily") == "short"  # the longer alias would run past the end
    assert _found(table, "Lily Potter") == "short"
    assert _found(table, "Gabo and Lily Evans") == "gabo"
    assert _found(table, "Potter") is None


def test_table_skips_empty_and_duplicate_aliases_per_target() -> None:
    table = AliasTable(
        [("ann", "Ann"), ("ann", "A.N.N."), ("ann", "!!!"), ("other", "ann"), ("bob", "Bob")]
    )
    assert table.entries == [
        AliasEntry("ann", "Ann", ("ann",)),
        AliasEntry("other", "ann", ("ann",)),
        AliasEntry("bob", "Bob", ("bob",)),
    ]
    assert len(table) == 3 and repr(table) == "AliasTable(3 aliases)"
    assert (_found(table, "ann"), _found(table, "bob")) == ("ann", "bob")


def test_table_sizes() -> None:
    table = AliasTable.from_targets(TARGETS)
    assert (table.max_tokens, table.max_chars) == (3, len("Gabriel García Márquez"))
    empty = AliasTable([("x", "..."), ("y", "")])
    assert (len(empty), empty.max_tokens, empty.max_chars) == (0, 0, 0)
    assert empty.find(tokenize("anything")) is None


def test_invisible_characters_inside_a_name_hide_nothing_on_the_way_in(guard: AliasGuard) -> None:
    for char in ("\u200b", "\u00ad", "\u2060", "\ufeff"):
        verdict = guard.check_input([{"role": "user", "content": f"What did Ga{char}bo write?"}])
        assert verdict.match is not None and verdict.match.target_id == "marquez"


@pytest.mark.parametrize(
    ("alias", "text", "transform"),
    [
        ("Zorblax Quintavius", "the author Zor-blax Quin/tavius", "plain"),
        ("Zorblax Quintavius", "Zor<!-- -->blax Quin\\tavius", "plain"),
        ("Zorblax Quintavius", "Z o r b l a x  Q u i n t a v i u s", "plain"),
        ("Zorblax Quintavius", "ZorblaxQuintavius wrote it", "plain"),
        ("Zorblax Quintavius", "suivatniuQ xalbroZ", "reversed"),
        ("Zorblax Quintavius", "Mbeoynk Dhvagnivhf", "rot13"),
        ("Zorblax Quintavius", "M0eoy4k Dh1a74i1h5", "rot13"),  # leet digits inside ROT13
        ("Stephen King", "name a film from Ste-phen Kin-g's fiction", "plain"),
        ("Tae-ho Park", "743-h0 P4rk h45 b33n h0n0r3d", "plain"),  # a leet word of digits only
        ("Stephen King", "stephen kings fiction (Morse drops the apostrophe)", "plain"),
        ("Марисол Кенби", "Who is Marisol Kenbi?", "transliterated"),
        ("Marisol Kenbi", "Кто такая Марисол Кенби?", "plain"),  # Cyrillic read as Latin
        ("罗琳", "Luo Lin wrote it", "transliterated"),
        ("罗琳", "作者是罗琳。", "plain"),
    ],
)
def test_spellings_separators_and_scripts(alias: str, text: str, transform: str) -> None:
    hit = AliasTable([("t", alias)]).find(tokenize(text))
    assert hit is not None and hit.transform == transform


@pytest.mark.parametrize(
    ("alias", "text"),
    [
        ("Ann", "the anns of the county"),  # no possessive s on a one-word alias
        ("Ann", "a n n u a l report"),  # a short alias is not looked for inside a run
        ("Stephen King", "Stephen Kingsley"),
        ("Tess", "in 7355 BC"),  # a number alone never spells a name
        ("Zorblax Quintavius", "Zorblax Quint"),
        ("Марисол Кенби", "Marisol Quenby"),  # transliteration is letters, not sound
    ],
)
def test_spellings_do_not_overreach(alias: str, text: str) -> None:
    assert AliasTable([("t", alias)]).find(tokenize(text)) is None
