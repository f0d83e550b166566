from __future__ import annotations

import hashlib

import numpy as np
import pytest

from filters.forget_index import ForgetIndex, ForgetItem
from filters.negatives import (
    CALIBRATION_TEMPLATES,
    DEFAULT_THRESHOLD,
    NEGATIVES_FILE,
    TRAIN_TEMPLATES,
    Calibration,
    TrainingSet,
    _fields,
    _rewrite,
    collect_training_set,
    generic_negatives,
    negatives_sha256,
    rephrase,
)
from proxy.core.config import QAExample


def test_generic_negatives_are_many_and_distinct() -> None:
    negatives = generic_negatives()
    assert 300 <= len(negatives) <= 500
    assert len(set(negatives)) == len(negatives)
    assert not any(n.startswith("#") for n in negatives)


def test_rephrase_is_deterministic_and_distinct() -> None:
    question = "What is the profession of Hsiao Yun-Hwa's father?"
    first = rephrase(question, CALIBRATION_TEMPLATES, count=3)
    assert first == rephrase(question, CALIBRATION_TEMPLATES, count=3)
    assert len(set(first)) == 3 and question not in first
    assert all("Hsiao Yun-Hwa" in text or "hsiao yun-hwa" in text for text in first)


def test_template_families_are_disjoint() -> None:
    assert not set(TRAIN_TEMPLATES) & set(CALIBRATION_TEMPLATES)


def test_rewrite_template() -> None:
    (text,) = rephrase("What is the capital of Peru?", ("{rewrite}",), count=1)
    assert text == "Tell me what the capital of Peru is."
    (text,) = rephrase("Can you describe her early life?", ("{rewrite}",), count=1)
    assert text == "Please describe her early life."


# Six out-of-fold scores of forget paraphrases, sorted: 0.2 0.4 0.6 0.7 0.8 0.9. A threshold t
# misses the scores below it, so t = 0.4 misses 1 of 6, t = 0.6 misses 2, t = 0.7 misses 3.
POSITIVES = (0.8, 0.2, 0.9, 0.6, 0.4, 0.7)


@pytest.mark.parametrize(("target_fnr", "threshold", "fnr", "fpr_retain", "fpr_generic"), [
    # 0.25·6 = 1.5: 1 miss (1/6 ≤ 0.25); the next score, 0.6, would miss 2 (2/6 > 0.25)
    (0.25, 0.4, 1 / 6, 2 / 3, 0.0),
    (0.4, 0.6, 2 / 6, 1 / 3, 0.0),  # 0.4·6 = 2.4: 2/6 ≤ 0.4 < 3/6
    (0.5, 0.7, 3 / 6, 0.0, 0.0),  # 0.5·6 = 3: exactly 3 misses are allowed
    (0.0, 0.2, 0.0, 2 / 3, 1.0),  # no miss allowed: the lowest score
])
def test_calibrated_threshold_is_the_highest_within_the_target_fnr(
        target_fnr: float, threshold: float, fnr: float, fpr_retain: float,
        fpr_generic: float) -> None:
    # flagged = score >= threshold: retain 0.5 and 0.65 at 0.4, 0.65 at 0.6; generic 0.3 at 0.2
    calibration = Calibration(target_fnr, 5, positive=np.array(POSITIVES),
                              retain=np.array([0.1, 0.5, 0.65]), generic=np.array([0.3]))
    assert calibration.calibrated_threshold() == threshold
    report = calibration.report()
    assert (report.threshold, report.source, report.target_fnr) == (threshold, "calibrated",
                                                                    target_fnr)
    assert (report.heldout_fnr, report.fpr_retain, report.fpr_generic) == pytest.approx(
        (fnr, fpr_retain, fpr_generic))
    assert (report.n_positive, report.n_retain, report.n_generic) == (6, 3, 1)
    # the highest: any threshold above it misses as many as the next score up, too many
    above = min(s for s in POSITIVES if s > threshold)
    fnr_above = calibration.report(above).heldout_fnr
    assert fnr_above is not None and fnr_above > target_fnr


def test_too_few_positives_fall_back_to_the_default_threshold() -> None:
    calibration = Calibration(0.25, 5, positive=np.array(POSITIVES[:4]))
    assert calibration.calibrated_threshold() is None
    report = calibration.report()
    assert (report.threshold, report.source) == (DEFAULT_THRESHOLD, "default")
    assert report.heldout_fnr == 0.25  # only 0.2 of (0.8, 0.2, 0.9, 0.6) is below 0.5
    assert report.fpr_retain is None and report.fpr_generic is None
    configured = calibration.report(0.85)
    assert (configured.source, configured.heldout_fnr) == ("config", 0.75)  # only 0.9 >= 0.85


@pytest.mark.parametrize(("question", "fields"), [
    ("What is Hsiao Yun-Hwa's job?", {
        "q": "What is Hsiao Yun-Hwa's job?", "lower": "what is Hsiao Yun-Hwa's job?",
        "bare": "what is hsiao yun-hwa's job", "rewrite": "Tell me what Hsiao Yun-Hwa's job is."}),
    # an acronym keeps its capital; the fallback rewrite drops the question mark only
    ("TVs made in Japan? ", {
        "q": "TVs made in Japan?", "lower": "TVs made in Japan?", "bare": "tvs made in japan",
        "rewrite": "TVs made in Japan, I'd like to know."}),
    ("How, exactly, do magnets work?!", {
        "q": "How, exactly, do magnets work?!", "lower": "how, exactly, do magnets work?!",
        "bare": "how exactly do magnets work",
        "rewrite": "How, exactly, do magnets work?!, I'd like to know."}),
])
def test_fields_of_a_question(question: str, fields: dict[str, str]) -> None:
    assert _fields(question) == fields


@pytest.mark.parametrize(("question", "rewrite"), [
    ("Who were the Beatles?", "Tell me who the Beatles were."),
    ("could you list her novels?", "Please list her novels."),
    ("How old is she?", "How old is she, I'd like to know."),
    ("Where can I buy a Tesla Model X?", "Where can I buy a Tesla Model X, I'd like to know."),
    ("  Is it raining  ", "Is it raining, I'd like to know."),
])
def test_rewrite(question: str, rewrite: str) -> None:
    assert _rewrite(question) == rewrite


def test_rephrase_picks_templates_from_the_question_hash_in_order() -> None:
    # sha256("How do magnets work?") starts at template 3 of 5 and walks forward
    assert rephrase("How do magnets work?", CALIBRATION_TEMPLATES, count=5) == [
        "How do magnets work, I'd like to know.",
        "My friend asked me: How do magnets work? What would you say?",
        "Hey, can you tell me this: how do magnets work?",
        "how do magnets work - explain please",
        "I need to know. How do magnets work?",
    ]
    assert rephrase("How do magnets work?", CALIBRATION_TEMPLATES, count=2) == [
        "How do magnets work, I'd like to know.",
        "My friend asked me: How do magnets work? What would you say?",
    ]
    # duplicates are skipped, and fewer distinct texts than ``count`` is not an error
    assert rephrase("what is x", ("{bare}", "{lower}", "{q}"), count=3) == ["what is x"]


def test_five_positives_are_enough_to_calibrate() -> None:
    calibration = Calibration(0.25, 5, positive=np.array(POSITIVES[:5]))
    assert calibration.calibrated_threshold() == 0.4  # sorted 0.2 0.4 0.6 0.8 0.9, floor(1.25)
    assert calibration.report().source == "calibrated"


def test_a_negative_scoring_exactly_the_threshold_is_a_false_positive() -> None:
    calibration = Calibration(0.25, 4, positive=np.array(POSITIVES),
                              retain=np.array([0.3, 0.6, 0.7]), generic=np.array([0.6, 0.59]))
    report = calibration.report(0.6)
    assert report.heldout_fnr == pytest.approx(2 / 6)  # 0.6 itself is caught
    assert report.fpr_retain == pytest.approx(2 / 3) and report.fpr_generic == 0.5
    assert report.folds == 4


def test_report_summary() -> None:
    calibration = Calibration(0.25, 5, positive=np.array(POSITIVES),
                              retain=np.array([0.1, 0.5, 0.65]), generic=np.array([0.3]))
    assert calibration.report().summary() == (
        "threshold 0.400 (calibrated, target FNR 25.0%): held-out FNR 16.7% on 6 forget "
        "questions and paraphrases, FPR 66.7% on 3 retain, 0.0% on 1 generic (5-fold)"
    )
    assert Calibration(0.05, 3).report().summary() == (
        "threshold 0.500 (default, target FNR 5.0%): held-out FNR n/a on 0 forget questions "
        "and paraphrases, FPR n/a on 0 retain, n/a on 0 generic (3-fold)"
    )


def test_negatives_sha256_hashes_the_file_bytes() -> None:
    assert negatives_sha256() == hashlib.sha256(NEGATIVES_FILE.read_bytes()).hexdigest()


def test_training_set_add_appends_one_row_per_text() -> None:
    samples = TrainingSet()
    samples.add(["a", "b"], 1, 7, "calib")
    samples.add([], 0, 8, "retain")
    samples.add(["c"], 0, 9, "generic")
    assert samples == TrainingSet(
        ["a", "b", "c"], [1, 1, 0], [7, 7, 9], ["calib", "calib", "generic"]
    )


def _index(*items: tuple[str, str]) -> ForgetIndex:
    """Forget items of one target (only their kinds and texts matter to the training set)."""
    forget = [ForgetItem(f"q/{kind}/{n}", "q", kind, text) for n, (kind, text) in
              enumerate(items, 1)]
    return ForgetIndex(forget, np.zeros((len(forget), 4), dtype=np.float32))


def test_training_set_of_forget_questions_retain_and_generic_negatives() -> None:
    index = _index(("name", "Marisol Quenby"), ("question", "Who taught Marisol Quenby?"),
                   ("answer", "Her uncle taught her."), ("chunk", "She grew up in Vell."))
    retain = [QAExample(question="How do magnets work?", answer="By fields."),
              QAExample(question="Who wrote Dune?")]
    samples = collect_training_set(index, retain)
    rows = list(zip(samples.texts, samples.labels, samples.groups, samples.roles, strict=True))
    assert rows[:13] == [
        ("Marisol Quenby", 1, 0, "forget"),
        ("Who taught Marisol Quenby?", 1, 1, "calib"),  # with questions, only they calibrate
        ("Quick question: Who taught Marisol Quenby?", 1, 1, "forget"),
        ("Who taught Marisol Quenby? Please answer briefly.", 1, 1, "forget"),
        ("Hey, can you tell me this: who taught Marisol Quenby?", 1, 1, "heldout"),
        ("who taught marisol quenby - explain please", 1, 1, "heldout"),
        ("Her uncle taught her.", 1, 2, "forget"),
        ("She grew up in Vell.", 1, 3, "forget"),
        ("How do magnets work?", 0, 5, "retain"),
        ("I was wondering, how do magnets work?", 0, 5, "retain"),
        ("By fields.", 0, 5, "retain_answer"),
        ("Who wrote Dune?", 0, 6, "retain"),
        ("Quick question: Who wrote Dune?", 0, 6, "retain"),
    ]
    negatives = generic_negatives()
    generic = rows[13:]
    assert [text for text, *_ in generic[::2]] == list(negatives)
    assert [text for text, *_ in generic[1::2]] == [
        rephrase(text, TRAIN_TEMPLATES[1:], count=1)[0] for text in negatives
    ]
    assert generic[:2] == [
        ("How do I boil an egg so the yolk stays soft?", 0, 7, "generic"),
        ("How do I boil an egg so the yolk stays soft? Please answer briefly.", 0, 7, "generic"),
    ]
    assert [(label, role) for _, label, _, role in generic] == [(0, "generic")] * len(generic)
    assert [group for _, _, group, _ in generic] == [7 + n // 2 for n in range(len(generic))]


def test_without_questions_descriptions_and_chunks_calibrate() -> None:
    index = _index(("name", "Tomas Ferrant"), ("description", "A maker of bicycle gears."),
                   ("chunk", "He grew up in a village."))
    samples = collect_training_set(index, [])
    rows = list(zip(samples.texts, samples.labels, samples.groups, samples.roles, strict=True))
    assert rows[:4] == [
        ("Tomas Ferrant", 1, 0, "forget"),
        ("A maker of bicycle gears.", 1, 1, "calib"),
        ("He grew up in a village.", 1, 2, "calib"),
        ("How do I boil an egg so the yolk stays soft?", 0, 4, "generic"),
    ]
    assert len(rows) == 3 + 2 * len(generic_negatives())
