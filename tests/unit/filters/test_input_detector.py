from __future__ import annotations

import itertools
import types
from pathlib import Path

import numpy as np
import pytest

from filters import input_detector
from filters.alias_matcher import AliasGuard
from filters.base import Match, Message, Verdict
from filters.artifacts import PolicyArtifacts
from filters.embedder import build_embedder
from filters.forget_index import ForgetIndex
from filters.input_detector import EmbeddingDetector, build_input_detector, query_texts
from proxy.core.config import EmbedderConfig, ForgetTargetConfig, InputDetectorConfig
from tests.policies import QUENBY_DOCUMENT as DOCUMENT


@pytest.mark.parametrize(
    ("turns", "context", "expected"),
    [
        ([], 3, []),
        (["  "], 3, []),
        (["only one"], 3, ["only one"]),
        (["a", "b"], 1, ["b"]),
        (["a", "b", "c", "d"], 3, ["d", "b\nc\nd"]),
        (["a", " ", "c"], 3, ["c", "a\nc"]),
    ],
)
def test_query_texts(turns: list[str], context: int, expected: list[str]) -> None:
    messages = [{"role": "system", "content": "be nice"}]
    for turn in turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    assert query_texts(messages, context) == expected + ["be nice"] + ["ok"] * bool(turns)


def test_query_texts_read_other_roles_after_the_user_turns() -> None:
    long_tool = "The glassworks ledger lists many names. " * 20 + "Marisol Quenby signed it."
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi"},
        {"role": "tool", "content": long_tool},
        {"role": "request", "tools": [{"type": "function", "function": {"name": "ledger"}}]},
    ]
    texts = query_texts(messages)
    assert texts[:2] == ["hi", "be nice"]
    assert texts[-1] == "ledger"
    windows = texts[2:-1]
    assert len(windows) > 1 and all(len(t.split()) <= 60 for t in windows)
    assert windows[-1].endswith("Marisol Quenby signed it.")
    assert query_texts([{"role": "system", "content": "  "}]) == []


def test_long_prompts_add_sentence_windows() -> None:
    filler = "Please read all of this carefully before you answer. " * 40
    texts = query_texts([{"role": "user", "content": filler + "Who founded the glassworks?"}])
    assert len(texts) > 2
    assert texts[-1].endswith("Who founded the glassworks?")
    assert all(len(t.split()) <= 60 for t in texts[1:])
    many = query_texts([{"role": "user", "content": "word. " * 5000}])
    assert len(many) <= 1 + 32


def test_windows_start_above_sixty_words() -> None:
    """Exactly ``WINDOW_WORDS`` words are read whole: no sentence windows are added."""
    first, last = " ".join(["alpha"] * 30), " ".join(["omega"] * 30)
    messages = [{"role": "user", "content": first}, {"role": "user", "content": last}]
    assert query_texts(messages) == [last, f"{first}\n{last}"]
    longer = [*messages, {"role": "user", "content": "why"}]
    windows = [f"{first} {last}", f"{last} why"]  # one window per turn pair, sharing a turn
    assert query_texts(longer) == ["why", f"{first}\n{last}\nwhy", *windows]


QUESTION = "What was Marisol Quenby's first patent?"
TARGETS = [
    ForgetTargetConfig(
        id="quenby",
        name="Marisol Quenby",
        aliases=["M. Quenby"],
        documents=[DOCUMENT],
        questions=[{"question": QUESTION, "answer": "A furnace lining."}],
    )
]
# items: name/1, name/2 (the alias), question/3, answer/4, chunk/5 (the whole document)
LONG_QUESTION = (
    "Tell me everything about the chemist who grew up in the harbour town of Vell, where her "
    "mother repaired fishing nets and her father kept the tide tables, and who at nineteen left "
    "for the capital to study glass chemistry."
)
NEUTRAL = "How do I bake sourdough bread at home?"
FILLER = (
    "I am planning a weekend trip with my family and we would love some ideas for a picnic menu "
    "with sandwiches, fruit and cold drinks, and maybe a few games for the children to play in "
    "the park. "
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> PolicyArtifacts:
    tmp = tmp_path_factory.mktemp("policy")
    return PolicyArtifacts(
        TARGETS, [], build_embedder(EmbedderConfig()), base_dir=tmp, cache_dir=tmp,
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def index(artifacts: PolicyArtifacts) -> ForgetIndex:
    return artifacts.index


def _user(*turns: str) -> list[Message]:
    return [{"role": "user", "content": turn} for turn in turns]


def _similarity(artifacts: PolicyArtifacts, text: str) -> float:
    """The cosine similarity of ``text`` to its nearest forget item."""
    ((score, _),) = artifacts.index.search(artifacts.embedder.embed([text]), k=1)[0]
    return score


def _detector(artifacts: PolicyArtifacts, **options: object) -> EmbeddingDetector:
    settings: dict[str, object] = {"threshold": 0.6, **options}
    return EmbeddingDetector(artifacts.index, artifacts.embedder, **settings)  # type: ignore[arg-type]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector's clock ticks 0.25 s per reading: every verdict takes exactly 250 ms."""
    ticks = itertools.count(100.0, 0.25)
    monkeypatch.setattr(input_detector, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


@pytest.mark.parametrize(
    ("turns", "item", "query"),
    [
        ((NEUTRAL, QUESTION), "quenby/question/3", QUESTION),  # the last turn alone is closest
        # the last turn is vague; joined with the turn before it, it is the forget question
        (("Marisol Quenby", "What was her first patent?"), "quenby/question/3",
         "Marisol Quenby\nWhat was her first patent?"),
        ((LONG_QUESTION,), "quenby/chunk/5", LONG_QUESTION),
    ],
)
def test_the_closest_query_text_blocks_and_is_named(
    artifacts: PolicyArtifacts, clock: None, turns: tuple[str, ...], item: str, query: str
) -> None:
    verdict = _detector(artifacts).check_input(_user(*turns))
    forget = next(i for i in artifacts.index.items if i.id == item)
    score = _similarity(artifacts, query)
    assert score == max(_similarity(artifacts, text) for text in query_texts(_user(*turns)))
    evidence = f"{forget.text[:160]} <~ {query[:160]}"
    assert verdict == Verdict(
        "block", "input_detector", score, 0.6, Match("quenby", item, evidence), elapsed_ms=250.0
    )


def test_a_sentence_window_of_a_long_prompt_can_win(artifacts: PolicyArtifacts) -> None:
    messages = _user(FILLER * 2 + "Also, what did Marisol Quenby's first patent describe?")
    texts = query_texts(messages)
    scores = [_similarity(artifacts, text) for text in texts]
    assert len(texts) == 3 and scores[2] == max(scores) > 0.55 > scores[0]
    verdict = _detector(artifacts, threshold=0.55).check_input(messages)
    assert verdict.is_block and verdict.score == scores[2]
    assert verdict.match is not None
    assert verdict.match.evidence == f"{QUESTION} <~ {texts[2][:160]}"


def test_the_threshold_itself_blocks(artifacts: PolicyArtifacts) -> None:
    messages = _user("Marisol Quenby", "What was her first patent?")
    score = _similarity(artifacts, "Marisol Quenby\nWhat was her first patent?")
    assert _detector(artifacts, threshold=score).check_input(messages).is_block
    above = float(np.nextafter(score, 2.0))
    verdict = _detector(artifacts, threshold=above).check_input(messages)
    assert (verdict.action, verdict.score, verdict.threshold, verdict.match) == (
        "allow", score, above, None
    )


def test_an_allow_reports_the_best_similarity(artifacts: PolicyArtifacts, clock: None) -> None:
    verdict = _detector(artifacts, name="detector").check_input(_user(NEUTRAL))
    score = _similarity(artifacts, NEUTRAL)
    assert 0.0 < score < 0.3
    assert verdict == Verdict("allow", "detector", score, 0.6, elapsed_ms=250.0)


def test_no_user_text_and_an_empty_index_allow_with_score_zero(
    artifacts: PolicyArtifacts, clock: None
) -> None:
    expected = Verdict("allow", "input_detector", 0.0, 0.6, elapsed_ms=250.0)
    assert _detector(artifacts).check_input([{"role": "user", "content": " "}]) == expected
    in_system = _detector(artifacts).check_input([{"role": "system", "content": QUESTION}])
    assert in_system.is_block and in_system.match is not None
    assert _detector(artifacts).score_texts([]) == []
    empty = ForgetIndex([], np.zeros((0, artifacts.index.dim), dtype=np.float32))
    detector = EmbeddingDetector(empty, artifacts.embedder, threshold=0.6)
    assert detector.score_texts([QUESTION, NEUTRAL]) == [(0.0, None), (0.0, None)]
    assert detector.check_input(_user(QUESTION)) == expected


def test_three_user_turns_are_read_together_by_default(artifacts: PolicyArtifacts) -> None:
    messages = _user("What did Marisol Quenby's first patent describe?", "I like pancakes.",
                     "Do you like tea?", "Say something nice.")  # fmt: skip
    detector = _detector(artifacts)
    assert detector.context_turns == 3
    assert not detector.check_input(messages).is_block
    verdict = _detector(artifacts, context_turns=4).check_input(messages)
    assert verdict.match is not None and verdict.match.item == "quenby/question/3"


def test_an_alias_blocks_before_any_embedding(artifacts: PolicyArtifacts, clock: None) -> None:
    detector = _detector(artifacts, aliases=AliasGuard(artifacts.aliases), threshold=0.99)
    verdict = detector.check_input(_user("I met M. Quenby once. " + QUESTION))
    match = Match("quenby", "alias:M. Quenby", "m quenby")
    assert verdict == Verdict("block", "input_detector", 1.0, 1.0, match, elapsed_ms=250.0)
    # no alias: the embedding decides, on its own threshold
    allowed = detector.check_input(_user(QUESTION.replace("Marisol Quenby's", "her")))
    assert allowed == Verdict(
        "allow", "input_detector", _similarity(artifacts, "What was her first patent?"), 0.99,
        elapsed_ms=250.0,
    )  # fmt: skip


def test_build_input_detector_follows_the_config(artifacts: PolicyArtifacts) -> None:
    cfg = InputDetectorConfig(type="input_detector", threshold=0.7, context_turns=2)
    detector = build_input_detector(cfg, artifacts)
    assert (detector.index, detector.embedder) == (artifacts.index, artifacts.embedder)
    assert (detector.name, detector.threshold, detector.context_turns) == (
        "input_detector", 0.7, 2
    )
    assert isinstance(detector.aliases, AliasGuard)
    assert detector.aliases.table is artifacts.aliases
    assert detector.check_input(_user("Who is Marisol Quenby?")).match == Match(
        "quenby", "alias:Marisol Quenby", "marisol quenby"
    )
    cfg = InputDetectorConfig(type="input_detector", aliases=False)
    assert build_input_detector(cfg, artifacts).aliases is None
    assert repr(detector) == f"EmbeddingDetector({artifacts.index!r}, threshold=0.7)"
