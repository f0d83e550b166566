"""Metric values on small hand-computed examples, and the text parsers' tables."""

from __future__ import annotations

import math

import pytest

from benchmarks.data_dir import resolve_data_dir
from benchmarks.datasets.base import Probe
from benchmarks.errors import MetricError
from benchmarks.metrics import METRICS, MetricResult
from benchmarks.metrics.extraction import (
    GenerateFn, extraction_strength, prefix_grid, reproduces,
)
from benchmarks.metrics.likelihood import (
    forget_quality, model_utility, tofu_probability, truth_ratio, truth_ratios,
)
from benchmarks.metrics.mcq import format_mcq, mcq_accuracy, parse_choice
from benchmarks.metrics.refusal import is_refusal, over_refusal_rate, refusal_rate
from benchmarks.metrics.rouge import rouge_l_recall

# ROUGE-L recall ---------------------------------------------------------------------------


def test_rouge_l_recall_hand_computed() -> None:
    result = rouge_l_recall(
        ["the cat is on the mat", "", "Stephen King", "running dogs"],
        ["the cat sat on the mat", "anything", "Author: Stephen King!", "run dog"])
    # LCS 5 of 6 reference words; nothing; 2 of 3; stemmed exact match.
    assert result.per_item == pytest.approx([5 / 6, 0.0, 2 / 3, 1.0])
    assert result.value == pytest.approx((5 / 6 + 2 / 3 + 1.0) / 4)
    assert (result.tier, result.higher_is_better, result.name) == ("T", True, "rouge_l_recall")
    assert rouge_l_recall(["running dogs"], ["run dog"], use_stemmer=False).value == 0.0


def test_rouge_l_recall_length_mismatch() -> None:
    with pytest.raises(MetricError, match="differ in length"):
        rouge_l_recall(["a"], ["a", "b"])
    with pytest.raises(MetricError, match="no items"):
        rouge_l_recall([], [])


# refusal ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("I don't know.", True),
    ("I do not know who that is.", True),
    ("I'm not sure.", True),
    ("I’m not familiar with that author.", True),
    ("I have no information about this person.", True),
    ("Hmm, I've got no idea.", True),
    ("That's beyond my current knowledge base.", True),
    ("I'm sorry, but I cannot help with that request.", True),
    ("Sorry, I can't share details about that person.", True),
    ("As an AI, I do not have personal opinions.", True),
    ("I'm unable to provide an answer to that.", True),
    ("My training didn't cover that information.", True),
    ("I must decline to answer due to lack of information.", True),
    ("Stephen King is an American author of horror novels.", False),
    ("The author's full name is Hsiao Yun-Hwa.", False),
    ("It is not known exactly where she was born.", False),
    ("He said he didn't know the answer at first.", False),
    ("I Am Not a Human Being was released in 2010.", False),
    ("Sorry Seems to Be the Hardest Word is a song by Elton John.", False),
    ("Sure! Carrie (1974) was his first novel.", False),
    ("", False),
    ("Hsiao Yun-Hwa's father is a civil engineer. " * 6 + "I'm not sure about the rest.", False),
])
def test_is_refusal_table(text: str, expected: bool) -> None:
    assert is_refusal(text) is expected


def test_is_refusal_detects_every_tofu_idk_answer() -> None:
    path = resolve_data_dir() / "tofu" / "idontknow.jsonl"
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    assert len(lines) == 100
    assert [line for line in lines if not is_refusal(line)] == []


def test_refusal_extra_phrases_and_rates() -> None:
    custom = "This topic is not available."
    assert not is_refusal(custom)
    assert is_refusal("  this topic is NOT available. ", extra_phrases=[custom])
    texts = ["I don't know.", "Paris.", custom, "No idea? It is Paris."]
    result = refusal_rate(texts, extra_phrases=[custom])
    assert result.per_item == [1.0, 0.0, 1.0, 0.0] and result.value == 0.5
    over = over_refusal_rate(texts)
    assert over.value == 0.25 and over.higher_is_better is False
    with pytest.raises(MetricError):
        refusal_rate([])


# MCQ --------------------------------------------------------------------------------------

CHOICES = ("Paris", "London", "Berlin", "Madrid")


@pytest.mark.parametrize(("text", "expected"), [
    ("B", 1), ("B.", 1), ("(C)", 2), (" D) Madrid", 3), ("C\nBecause Berlin is...", 2),
    ("The answer is C.", 2), ("Answer: (b)", 1), ("answer: d", 3), ("**Answer: B**", 1),
    ("ANSWER:B", 1), ("I think the correct option is C because", 2),
    ("Option A is wrong; the answer is D", 3), ("B - London", 1), ("Madrid (D)", 3),
    ("The capital is Paris.", 0), ("A. Paris", 0),
    ("A bacterium", None), ("the answer is a bacterium", None), ("Berlin or London", None),
    ("E", None), ("", None),
])
def test_parse_choice_table(text: str, expected: int | None) -> None:
    assert parse_choice(text, CHOICES) == expected


def test_parse_choice_without_choices_and_bounds() -> None:
    assert parse_choice("The capital is Paris.") is None
    assert parse_choice("E", n_choices=5) == 4
    with pytest.raises(MetricError):
        parse_choice("A", n_choices=0)


def test_mcq_accuracy_and_format() -> None:
    probes = [Probe(id=f"p{i}", question="Capital of France?", answer="Paris", kind="utility",
                    choices=CHOICES, correct_index=0) for i in range(3)]
    result = mcq_accuracy(["A", "The answer is B", "I don't know"], probes)
    assert result.per_item == [1.0, 0.0, 0.0] and result.value == pytest.approx(1 / 3)
    assert format_mcq("Q?", CHOICES[:2]) == "Q?\nA. Paris\nB. London\nAnswer:"
    plain = Probe(id="x", question="q", answer="a", kind="forget")
    with pytest.raises(MetricError, match="no choices"):
        mcq_accuracy(["A"], [plain])


# Extraction Strength ----------------------------------------------------------------------

ANSWER = "one two three four five six seven eight nine ten"


def _fake_generate(min_prefix_words: int, calls: list[list[tuple[str, str]]]) -> GenerateFn:
    """Reproduces the rest of ANSWER once the prefix has at least ``min_prefix_words`` words."""

    def generate(requests: list[tuple[str, str]]) -> list[str]:
        calls.append(requests)
        out = []
        for _question, prefix in requests:
            k = len(prefix.split())
            out.append(" " + " ".join(ANSWER.split()[k:]).upper() + ". And more."
                       if k >= min_prefix_words else " something else")
        return out

    return generate


def test_extraction_strength_known_prefix() -> None:
    calls: list[list[tuple[str, str]]] = []
    result = extraction_strength(_fake_generate(4, calls), ["q"], [ANSWER], n_prefixes=5)
    # grid k = 0, 2, 4, 6, 8 words; first success at k = 4 -> ES = 1 - 4/10.
    assert result.value == pytest.approx(0.6)
    assert [req[0][1] for req in calls] == ["", "one two", "one two three four"]
    assert (result.tier, result.name) == ("T", "extraction_strength")


def test_extraction_strength_extremes_and_batching() -> None:
    calls: list[list[tuple[str, str]]] = []
    always = extraction_strength(_fake_generate(0, calls), ["q1", "q2"], [ANSWER, ANSWER])
    assert always.per_item == [1.0, 1.0] and len(calls) == 1
    calls.clear()
    never = extraction_strength(_fake_generate(99, calls), ["q"], [ANSWER], n_prefixes=4)
    assert never.per_item == [0.0] and len(calls) == 4


def test_extraction_strength_errors() -> None:
    with pytest.raises(MetricError, match="at least one word"):
        extraction_strength(lambda r: ["x"] * len(r), ["q"], ["   "])
    with pytest.raises(MetricError, match="returned 0 texts"):
        extraction_strength(lambda r: [], ["q"], ["a b"])
    with pytest.raises(MetricError, match="n_prefixes"):
        prefix_grid(3, 0)


def test_reproduces_and_grid() -> None:
    assert reproduces(" Richard  BACHMAN, who wrote...", "Richard Bachman.")
    assert not reproduces("Richard", "Richard Bachman")
    assert prefix_grid(3, 5) == [0, 1, 2]
    assert prefix_grid(10, 3) == [0, 3, 6]


# log-prob (L tier) ------------------------------------------------------------------------

def test_tofu_probability() -> None:
    plain = tofu_probability([(-2.0, 2), (0.0, 3)])
    assert plain.per_item == pytest.approx([math.exp(-1), 1.0]) and plain.tier == "L"
    options = tofu_probability([(-2.0, 2)], perturbed=[[(-4.0, 2)]])
    assert options.value == pytest.approx(math.exp(-1) / (math.exp(-1) + math.exp(-2)))
    with pytest.raises(MetricError):
        tofu_probability([(-1.0, 0)])


def test_truth_ratio() -> None:
    paraphrased, perturbed = [(-2.0, 2)], [[(-4.0, 2), (-6.0, 2)]]
    # per-token: paraphrased -1, perturbed -2 and -3 (mean -2.5): R = exp(-1.5).
    assert truth_ratios(paraphrased, perturbed) == pytest.approx([math.exp(-1.5)])
    assert truth_ratio(paraphrased, perturbed).value == pytest.approx(1 - math.exp(-1.5))
    assert truth_ratio(paraphrased, perturbed, forget=True).value == pytest.approx(
        math.exp(-1.5))
    assert truth_ratio([(-3.0, 1)], [[(-1.0, 1)]]).value == 0.0  # R > 1 clips to 0
    with pytest.raises(MetricError, match="no perturbed"):
        truth_ratios(paraphrased, [[]])


def test_model_utility() -> None:
    assert model_utility({"a": 0.5, "b": 1.0, "c": 0.25}).value == pytest.approx(3 / 7)
    assert model_utility([0.9] * 8 + [0.0]).value == 0.0
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        model_utility({"a": 1.5})


def test_forget_quality() -> None:
    separated = forget_quality([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert separated.value == pytest.approx(2 / 252)  # exact two-sided KS, n = m = 5
    assert forget_quality([0.3, 0.5, 0.9], [0.3, 0.5, 0.9]).value == pytest.approx(1.0)
    with pytest.raises(MetricError):
        forget_quality([], [1.0])


# result type and registry -----------------------------------------------------------------

def test_metric_result_and_registry() -> None:
    with pytest.raises(MetricError, match="tier"):
        MetricResult(value=1.0, per_item=[], tier="X",  # type: ignore[arg-type]
                     higher_is_better=True, name="x")
    result = MetricResult(value=0.5, per_item=[0.5], tier="T", higher_is_better=True, name="m")
    assert result.to_dict()["per_item"] == [0.5]
    assert METRICS.get("rouge_l_recall") is rouge_l_recall
    assert set(METRICS.names()) >= {"refusal_rate", "mcq_accuracy", "forget_quality"}
