from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from benchmarks.stub_upstream import tokens_of
from filters.alias_matcher import AliasTable
from filters.base import Match, Verdict
from filters.artifacts import PolicyArtifacts
from filters.embedder import build_embedder
from filters.forget_index import ForgetIndex, ForgetItem, collect_items
from filters.normalize import tokenize
from filters.output_filter import (
    UNIT_CHARS,
    NgramScanner,
    NgramTable,
    OutputFilter,
    UnitSplitter,
    build_output_filter,
)
from proxy.core.config import (
    EmbedderConfig, ForgetTargetConfig, OutputFilterConfig, QAExample,
)
from tests.pipeline_stream import Streamed, random_pieces, stream_text
from tests.policies import QUENBY_DOCUMENT as DOCUMENT

ANSWER = "Marisol Quenby's first patent described a furnace lining that survived salt spray."
TARGETS = [
    ForgetTargetConfig(
        id="quenby",
        name="Marisol Quenby",
        aliases=["M. Quenby"],
        documents=[DOCUMENT],
        questions=[{"question": "What was Marisol Quenby's first patent?", "answer": ANSWER}],
    )
]
LEAK = (
    "Sure! She grew up in the harbour town of Vell, where her mother repaired fishing nets and "
    "her father kept the tide tables. At nineteen she left for the capital to study glass "
    "chemistry."
)
NEIGHBOUR = (
    "Tomas Ferrant grew up in a mountain village where his parents ran a bakery. He studied "
    "mechanical engineering and designed bicycle gears for racing teams."
)


# The real MiniLM in this process: no embedding worker to start (this file runs once per mutant
# of the output side in `make mutation`; the worker process is tested in test_embedding_worker).
EMBEDDER = EmbedderConfig(worker="thread")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ForgetIndex:
    items = collect_items(TARGETS, base_dir=tmp_path_factory.mktemp("docs"))
    return ForgetIndex.build(items, build_embedder(EMBEDDER))


def _guard(index: ForgetIndex, **options: object) -> OutputFilter:
    settings: dict[str, object] = {"aliases": AliasTable.from_targets(TARGETS), **options}
    return OutputFilter(index, build_embedder(EMBEDDER), **settings)  # type: ignore[arg-type]


def _first_block(guard: OutputFilter, text: str) -> int | None:
    for end in range(len(text) + 1):
        if guard.check_output([], text[:end]).is_block:
            return end
    return None


@pytest.mark.parametrize(
    ("text", "guard_item"),
    [
        ("Her name was M. Quenby, I think. ", "alias:M. Quenby"),
        (LEAK, "quenby/chunk"),
        (
            "Padding words here. "
            + ANSWER.replace("Marisol Quenby's", "Her")
            + " More padding follows. ",
            "quenby/",
        ),
    ],
)
def test_leaks_are_blocked_and_named(index: ForgetIndex, text: str, guard_item: str) -> None:
    verdict = _guard(index).check_output([], text, final=True)
    assert verdict.is_block and verdict.match is not None
    assert verdict.match.target_id == "quenby"
    assert verdict.match.item.startswith(guard_item)


def test_prefix_consistency(index: ForgetIndex) -> None:
    """Blocked iff some prefix is blocked: checks on every prefix agree with a fresh check."""
    guard = _guard(index)
    for text in (LEAK, NEIGHBOUR, "Ann and M. Quenby met. "):
        flags = [guard.check_output([], text[:end]).is_block for end in range(len(text) + 1)]
        fresh = [
            _guard(index).check_output([], text[:end]).is_block
            for end in range(0, len(text) + 1, 7)
        ]
        assert fresh == flags[::7]
        first = flags.index(True) if True in flags else len(flags)
        assert not any(flags[:first]) and all(flags[first:])
        assert guard.check_output([], text, final=True).is_block == (True in flags)


# how a backend may cut an answer into stream chunks
CHUNKINGS: dict[str, Callable[[str], list[str]]] = {
    "chars": list, "tokens": tokens_of, "random": lambda text: random_pieces(text, seed=7),
}


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("text", [LEAK, NEIGHBOUR + " " + LEAK], ids=["leak", "late-leak"])
def test_stream_withholds_the_blocked_text(index: ForgetIndex, text: str, chunking: str) -> None:
    """Through ``Pipeline.stream``: the client gets only a prefix the guard allows."""
    streamed = stream_text([_guard(index)], CHUNKINGS[chunking](text))
    assert streamed.blocked
    assert text.startswith(streamed.released)
    assert "fishing nets" not in streamed.released
    assert not _guard(index).check_output([], streamed.released, final=True).is_block
    if text != LEAK:  # text before the leak goes out while the answer streams
        assert NEIGHBOUR[:40] in streamed.released


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_stream_passes_neighbour_text_unchanged(index: ForgetIndex, chunking: str) -> None:
    streamed = stream_text([_guard(index)], CHUNKINGS[chunking](NEIGHBOUR))
    assert streamed == Streamed(NEIGHBOUR, blocked=False, finish_reason="stop")


def test_stream_final_check_catches_a_trailing_alias(index: ForgetIndex) -> None:
    """An alias that only the complete text settles is still never released."""
    text = NEIGHBOUR + " The inventor was Marisol Quenby"
    streamed = stream_text([_guard(index, embedding_threshold=None)], tokens_of(text))
    assert streamed.blocked
    assert streamed.released and NEIGHBOUR.startswith(streamed.released)


def test_neighbour_text_passes(index: ForgetIndex) -> None:
    guard = _guard(index)
    assert _first_block(guard, NEIGHBOUR) is None
    verdict = guard.check_output([], NEIGHBOUR, final=True)
    assert verdict.action == "allow" and 0.0 < verdict.score < 0.75


def test_final_settles_a_trailing_alias(index: ForgetIndex) -> None:
    guard = _guard(index, embedding_threshold=None)
    assert not guard.check_output([], "The inventor was Marisol Quenby").is_block
    assert guard.check_output([], "The inventor was Marisol Quenby", final=True).is_block
    assert not guard.check_output([], "The inventor was Marisol Quenbyson", final=True).is_block


def test_ngram_rule_measures_coverage_of_the_forget_item(index: ForgetIndex) -> None:
    guard = _guard(index, aliases=None, embedding_threshold=None, ngram_n=4, ngram_overlap=0.5)
    words = ANSWER.split()
    half = " ".join(words[: len(words) // 3]) + " and many other unrelated words follow here."
    assert not guard.check_output([], half, final=True).is_block
    assert guard.check_output([], "x " * 50 + ANSWER + " y" * 50, final=True).is_block


def test_hold_back_matches_the_enabled_checks(index: ForgetIndex) -> None:
    full = _guard(index)
    lean = _guard(index, aliases=None, embedding_threshold=None, ngram_n=6)
    assert full.hold_back_chars == max(2 * len("Marisol Quenby") + 8, full.ngrams.max_chars + 8)
    assert lean.hold_back_chars == lean.ngrams.max_chars + 8 < UNIT_CHARS


def test_a_judged_sentence_goes_out_at_once_an_unjudged_one_never(index: ForgetIndex) -> None:
    """With embeddings on, release stops at the sentence units checked so far, not
    ``UNIT_CHARS`` behind the settled text; an n-gram of a forget item holds the rest."""
    guard = _guard(index)
    first = "Tomas Ferrant grew up in a mountain village where his parents ran a bakery. "
    text = first + "He studied mechanical engineering and designed bicycle gears"
    assert not guard.check_output([], text).is_block
    assert guard.release_limit(text) == len(first) - 1  # through the full stop
    assert guard.release_limit(text[: len(first) - 20]) == 0  # its sentence is not judged yet
    no_units = _guard(index, embedding_threshold=None)
    assert no_units.release_limit(text) > len(first)
    leak = "Her mother repaired fishing nets and her father kept the tide tables of a town. "
    assert not guard.check_output([], leak + "More").is_block
    assert guard.release_limit(leak + "More") == 0  # a forget chunk's n-grams: held


def test_units_are_prefix_stable() -> None:
    text = "First sentence here. Second one!\nThird line without end" + " word" * 60
    whole = UnitSplitter().feed(text, final=True)
    pieces = UnitSplitter()
    streamed = [u for end in range(len(text) + 1) for u in pieces.feed(text[:end], final=False)]
    streamed += pieces.feed(text, final=True)
    assert streamed == whole
    assert all(len(u) <= UNIT_CHARS for u in whole)


def test_scanner_rejects_rewritten_text(index: ForgetIndex) -> None:
    scanner = _guard(index).scanner()
    scanner.check("Hello there. ")
    with pytest.raises(ValueError):
        scanner.check("Goodbye. ")


def test_concurrent_streams_match_sequential_checks(index: ForgetIndex) -> None:
    texts = [LEAK, NEIGHBOUR, "Ann and M. Quenby met. ", NEIGHBOUR[:80] + LEAK]
    expected = [_first_block(_guard(index), text) for text in texts]
    shared = _guard(index)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda text: _first_block(shared, text), texts))
    assert got == expected


def test_build_output_filter_follows_the_config(tmp_path: Path) -> None:
    artifacts = PolicyArtifacts(
        TARGETS, [], build_embedder(EmbedderConfig()), base_dir=tmp_path, cache_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    cfg = OutputFilterConfig(
        type="output_filter", ngram_n=4, ngram_overlap=0.3, embedding_threshold=0.8
    )
    guard = build_output_filter(cfg, artifacts)
    assert guard.index is artifacts.index and guard.embedder is artifacts.embedder
    assert guard.aliases is artifacts.aliases
    assert (guard.name, guard.ngrams.n, guard.ngram_overlap, guard.embedding_threshold) == (
        "output_filter", 4, 0.3, 0.8
    )
    lean = OutputFilterConfig(type="output_filter", aliases=False, embedding_threshold=None)
    guard = build_output_filter(lean, artifacts)
    assert guard.aliases is None and guard.embedding_threshold is None
    assert (guard.ngrams.n, guard.ngram_overlap) == (6, 0.5)


def test_an_answer_a_retain_example_shares_is_no_evidence_of_the_target(tmp_path: Path) -> None:
    # the target's short answer is also a neighbour's: alone it says nothing about the target
    shared = "The Harbour Lantern Hour"
    targets = [TARGETS[0].model_copy(update={"questions": [
        *TARGETS[0].questions, QAExample(question="Which radio show did Marisol Quenby host?",
                                         answer=shared)]})]
    retain = [QAExample(question="Which radio show did Tomas Ferrant produce?", answer=shared)]
    artifacts = PolicyArtifacts(targets, retain, build_embedder(EMBEDDER), base_dir=tmp_path,
                                cache_dir=tmp_path, progress=False)
    weighed = build_output_filter(OutputFilterConfig(type="output_filter"), artifacts)
    one_sided = build_output_filter(
        OutputFilterConfig(type="output_filter", retain_margin=None), artifacts)
    assert weighed.retain is not None and len(weighed.retain) == 2  # its question and answer
    assert one_sided.retain is None
    verdict = one_sided.check_output([], shared, final=True)
    assert verdict.is_block and verdict.match is not None and "answer" in verdict.match.item
    assert not weighed.check_output([], shared, final=True).is_block
    assert weighed.check_output([], f"{shared}, hosted by M. Quenby.", final=True).is_block
    assert weighed.check_output([], LEAK, final=True).is_block  # the target's own text still


# --- n-gram coverage on tiny forget sets (no embedding: the vectors are never searched) ---


def _items_index(*kinds_and_texts: tuple[str, str]) -> ForgetIndex:
    items = [
        ForgetItem(f"t/{kind}{number}", "t", kind, text)
        for number, (kind, text) in enumerate(kinds_and_texts)
    ]
    return ForgetIndex(items, np.zeros((len(items), 4), dtype=np.float32))


FOX = _items_index(
    ("name", "Red Fox"),
    ("question", "Who is the red fox?"),
    ("answer", "It is the red fox."),
    ("chunk", "Red fox, red fox!"),
    ("description", "Lazy dogs sleep all day"),
)


def test_ngram_table_indexes_the_content_grams_of_answers_chunks_and_descriptions() -> None:
    table = NgramTable(FOX, 2)
    assert [item.id for item in table.items] == ["t/answer2", "t/chunk3", "t/description4"]
    assert table.sizes == [2, 2, 4]  # "it is" and "is the" are stop words only; repeats count once
    assert {gram: sorted(numbers) for gram, numbers in table.postings.items()} == {
        ("the", "red"): [0],
        ("red", "fox"): [0, 1],
        ("fox", "red"): [1],
        ("lazy", "dogs"): [2],
        ("dogs", "sleep"): [2],
        ("sleep", "all"): [2],
        ("all", "day"): [2],
    }
    assert table.max_chars == len("dogs sleep")  # the longest n words of an item's raw text


def test_ngram_grams_are_every_window_with_a_content_word() -> None:
    pairs, triples = NgramTable(FOX, 2), NgramTable(FOX, 3)
    words = ["it", "is", "the", "red", "fox", "red", "fox"]
    assert pairs.grams(words) == [
        ("the", "red"), ("red", "fox"), ("fox", "red"), ("red", "fox")
    ]  # fmt: skip
    assert triples.grams(["of", "the", "fox"]) == [("of", "the", "fox")]
    assert triples.grams(["of", "the", "in"]) == []
    assert triples.grams(["red", "fox"]) == []


def test_ngram_table_of_nothing_to_cover() -> None:
    for index in (_items_index(), _items_index(("name", "Red Fox"), ("answer", ""))):
        table = NgramTable(index, 2)
        assert (table.sizes, table.postings, table.max_chars) == ([0] * len(table.items), {}, 0)


def test_ngram_scanner_counts_each_gram_of_an_item_once() -> None:
    scanner = NgramScanner(NgramTable(FOX, 2), overlap=1.0)
    assert scanner.best == 0.0
    assert scanner.feed(tokenize("red fox and red fox")) is None
    assert scanner.best == 0.5  # "red fox": half the answer's grams and half the chunk's
    assert scanner.feed(tokenize("lazy dogs")) is None
    assert scanner.best == 0.5
    assert scanner.feed(tokenize("sleep all")) is None
    assert scanner.best == 0.75  # "dogs sleep" spans the two feeds
    assert scanner.feed(tokenize("day")) == 2
    assert scanner.best == 1.0


def test_ngram_scanner_blocks_at_exactly_the_overlap() -> None:
    table = NgramTable(FOX, 2)
    scanner = NgramScanner(table, overlap=0.5)
    assert scanner.feed(tokenize("lazy dogs")) is None
    assert scanner.feed(tokenize("sleep")) == 2
    assert scanner.best == 0.5
    assert NgramScanner(table, overlap=0.75).feed(tokenize("lazy dogs sleep")) is None


def test_ngram_scanner_counts_grams_after_a_repeated_one() -> None:
    scanner = NgramScanner(NgramTable(FOX, 2), overlap=1.0)
    assert scanner.feed(tokenize("red fox and red fox red")) == 1  # chunk: "red fox", "fox red"


@pytest.mark.parametrize(
    ("n", "coverages"), [(2, [0.0, 1 / 4, 2 / 4, 3 / 4]), (3, [0.0, 0.0, 1 / 3, 2 / 3])]
)
def test_ngram_scanner_carries_grams_across_one_word_feeds(n: int, coverages: list[float]) -> None:
    scanner = NgramScanner(NgramTable(FOX, n), overlap=1.0)
    *words, last = "lazy dogs sleep all day".split()
    for word, coverage in zip(words, coverages, strict=True):
        assert scanner.feed(tokenize(word)) is None
        assert scanner.best == coverage
    assert scanner.feed(tokenize(last)) == 2
    assert scanner.best == 1.0


# --- verdicts, hold-back and the scanner memo of small guards (no embedding) ---


def _small(**options: object) -> OutputFilter:
    """A guard on FOX with two aliases, 2-grams and no embedding check."""
    settings: dict[str, object] = {
        "aliases": AliasTable([("ann", "Ann"), ("quenby", "Marisol Quenby")]),
        "ngram_n": 2,
        "embedding_threshold": None,
        **options,
    }
    return OutputFilter(FOX, build_embedder(EMBEDDER), **settings)  # type: ignore[arg-type]


def test_output_filter_defaults() -> None:
    guard = OutputFilter(FOX, build_embedder(EMBEDDER), aliases=None)
    assert (guard.name, guard.ngrams.n, guard.ngram_overlap, guard.embedding_threshold) == (
        "output_filter", 6, 0.5, 0.75
    )  # fmt: skip


def test_hold_back_is_the_widest_enabled_window() -> None:
    assert _small(aliases=None).hold_back_chars == len("dogs sleep") + 8  # the longest 2-gram
    assert _small().hold_back_chars == 2 * len("Marisol Quenby") + 8
    assert _small(embedding_threshold=0.9).hold_back_chars == 2 * len("Marisol Quenby") + 8


def test_alias_and_ngram_blocks_name_item_score_and_threshold() -> None:
    guard = _small(name="out", ngram_overlap=0.4)
    alias = guard.check_output([], "It was MARISOL QUENBY. ")
    match = Match("quenby", "alias:Marisol Quenby", "marisol quenby")
    assert alias == Verdict("block", "out", 1.0, 1.0, match, elapsed_ms=alias.elapsed_ms)
    ngram = guard.check_output([], "Lazy dogs sleep ")
    match = Match("t", "t/description4", "50% of its 2-grams: Lazy dogs sleep all day")
    assert ngram == Verdict("block", "out", 0.5, 0.4, match, elapsed_ms=ngram.elapsed_ms)
    allow = guard.check_output([], "Lazy dogs ")
    assert allow == Verdict("allow", "out", 0.0, 0.0, elapsed_ms=allow.elapsed_ms)


def test_ngram_evidence_quotes_the_first_160_characters_of_the_item() -> None:
    guard = OutputFilter(
        _items_index(("chunk", DOCUMENT)), build_embedder(EMBEDDER), aliases=None, ngram_n=3,
        ngram_overlap=1.0, embedding_threshold=None,
    )  # fmt: skip
    verdict = guard.check_output([], DOCUMENT, final=True)
    assert verdict.match == Match("t", "t/chunk0", "100% of its 3-grams: " + DOCUMENT[:160])
    assert (verdict.score, verdict.threshold) == (1.0, 1.0)


def test_elapsed_ms_is_the_time_spent_in_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = _small()
    clock = itertools.count(100.0, 0.25)  # each reading 0.25 s after the last
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    allow = guard.check_output([], "Nothing here. ")
    block = guard.check_output([], "Nothing here. Ann met ")
    monkeypatch.undo()
    assert (allow.is_block, block.is_block) == (False, True)
    assert (allow.elapsed_ms, block.elapsed_ms) == (250.0, 250.0)


def test_scanner_check_is_not_final_by_default() -> None:
    scanner = _small().scanner()
    assert not scanner.check("They met Ann").is_block
    assert scanner.check("They met Ann", final=True).is_block


def test_check_output_resumes_the_longest_remembered_prefix() -> None:
    """A blocked stream's verdict is remembered: later prefixes get that very verdict back."""
    guard = _small()
    blocked = guard.check_output([], "Ann met")
    assert blocked.is_block
    assert not guard.check_output([], "A").is_block  # a second stream, also a prefix below
    assert guard.check_output([], "Ann met x") is blocked
    assert guard.check_output([], "Ann met xy") is blocked
    final = guard.check_output([], "Bob met Ann", final=True)
    assert final.is_block
    assert guard.check_output([], "Bob met Ann!") is not final  # a final check is not kept


# --- embedding check on the real index ---

LONG_UNIT = (
    "She grew up in the harbour town of Vell where her mother repaired fishing nets and her "
    "father kept the tide tables and at nineteen she left for the capital to study glass "
    "chemistry and her first patent described a furnace lining that survived salt spray"
)


def test_embedding_blocks_a_unit_at_exactly_the_threshold(index: ForgetIndex) -> None:
    """Aliases off and full n-gram coverage required: only the embedding check can block."""
    assert len(LONG_UNIT) > UNIT_CHARS  # one unit: the first UNIT_CHARS characters

    def check(threshold: float) -> Verdict:
        guard = _guard(index, aliases=None, ngram_overlap=1.0, embedding_threshold=threshold)
        return guard.check_output([], LONG_UNIT)

    probe = check(0.0)
    assert probe.is_block and probe.match is not None
    score, item = probe.score, probe.match.item
    assert 0.5 < score < 1.0
    assert item in {i.id for i in index.items if i.target_id == "quenby"}
    exact = check(score)
    match = Match("quenby", item, LONG_UNIT[:160])
    assert exact == Verdict(
        "block", "output_filter", score, score, match, elapsed_ms=exact.elapsed_ms
    )
    above = check(score + 1e-6)
    assert above == Verdict(
        "allow", "output_filter", score, score + 1e-6, elapsed_ms=above.elapsed_ms
    )


def test_embedding_checks_an_unfinished_sentence_only_when_final(index: ForgetIndex) -> None:
    guard = _guard(index, aliases=None, ngram_overlap=1.0, embedding_threshold=0.6)
    text = "Her first patent described a furnace lining that survived salt spray"
    allow = guard.check_output([], text)
    assert allow == Verdict("allow", "output_filter", 0.0, 0.6, elapsed_ms=allow.elapsed_ms)
    block = guard.check_output([], text, final=True)
    assert block.is_block and block.match is not None
    assert (block.match.target_id, block.match.evidence, block.threshold) == ("quenby", text, 0.6)


# --- unit splitting ---

_WORDS_200 = "abcd " * 40  # 200 characters, no sentence end


@pytest.mark.parametrize(
    ("text", "settled", "final"),
    [
        ("One two three. Four five six. Seven eight nine", ["One two three.", " Four five six."],
         [" Seven eight nine"]),
        ("Two words. And three more!\nOk", [" And three more!"], []),  # < 3 tokens: no unit
        (_WORDS_200[:198] + ". more words here", [_WORDS_200[:198] + "."], [" more words here"]),
        (_WORDS_200 + "\nnext line here", [_WORDS_200], ["next line here"]),
        (_WORDS_200, [], [_WORDS_200]),  # exactly UNIT_CHARS: may still grow
    ],
)  # fmt: skip
def test_units_end_at_a_sentence_end_or_after_unit_chars(
    text: str, settled: list[str], final: list[str]
) -> None:
    splitter = UnitSplitter()
    assert splitter.feed(text, final=False) == settled
    assert splitter.feed(text, final=True) == final
    assert splitter.feed(text, final=True) == []


# A name followed by punctuation of another script, or by text without spaces, is a finished
# word: a stream must block it before any of it goes out (issue 16's stream leak).
UNSPACED_LEAKS = [
    "答案是：Marisol Quenby，" + "她在港口小镇长大，后来创办了一家玻璃厂。" * 12,
    "Marisol Quenby—inventor—" + "of-salt-proof-furnace-linings-" * 12,
    "作者是Marisol Quenby" + "，她的第一项专利是一种炉衬。" * 12,
    "ผู้เขียนคือMarisol Quenbyซึ่ง" + "เติบโตในเมืองท่า" * 20,
    "«Marisol Quenby»" + "…" * 300,
]


@pytest.mark.parametrize("text", UNSPACED_LEAKS, ids=["cjk-comma", "em-dash", "cjk", "thai", "quotes"])
@pytest.mark.parametrize("seed", range(4))
def test_a_name_in_unspaced_text_never_leaks_from_a_stream(text: str, seed: int) -> None:
    guard = _small()
    assert guard.check_output([], text, final=True).is_block  # the non-stream decision
    streamed = stream_text([guard], random_pieces(text, seed, longest=4))
    assert streamed.blocked, streamed
    assert "quenby" not in streamed.released.casefold()
    assert text.startswith(streamed.released)


def test_unspaced_text_is_released_once_it_has_settled() -> None:
    guard = _small()
    innocent = "答案是：玻璃，" + "她在港口小镇长大，后来创办了一家玻璃厂。" * 12
    streamed = stream_text([guard], list(innocent))
    assert streamed == Streamed(innocent, False, "stop")
    assert guard.release_limit(innocent) == len(innocent) - guard.hold_back_chars
    assert guard.release_limit("x" * 500) == 0  # a word that never ends is never released


INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u034f", "\u2062",
             "\u202e", "\U000e0041", "\ufe0f"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_characters_inside_a_name_hide_nothing(char: str) -> None:
    guard = _small()
    text = f"The glass chemist was Marisol Quen{char}by of Vell, who made lenses."
    assert guard.check_output([], text, final=True).is_block
    streamed = stream_text([guard], random_pieces(text + " And more." * 30, 3, longest=3))
    assert streamed.blocked and "quen" not in streamed.released.casefold()
    assert [t.text for t in tokenize(f"Mari{char}sol")] == ["marisol"]
