from __future__ import annotations

from filters.negatives import (
    CALIBRATION_TEMPLATES,
    TRAIN_TEMPLATES,
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
