from __future__ import annotations

import numpy as np
import pytest

from filters.negatives import (
    CALIBRATION_TEMPLATES,
    DEFAULT_THRESHOLD,
    TRAIN_TEMPLATES,
    Calibration,
    generic_negatives,
    rephrase,
)


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
