"""Training and calibration data of the input classifier.

Generic negatives, templated rephrasings, the labelled training set and the out-of-fold scores
that calibrate the threshold (:class:`Calibration` -> :class:`CalibrationReport`).

``generic_negatives.txt`` holds a few hundred everyday requests (cooking, science, coding,
history, famous real people…) written for this project; they teach the classifier what a
request about *no* forget target looks like. :func:`rephrase` makes cheap automatic
paraphrases of a question from fixed templates: one template family augments training, a
disjoint family serves calibration, so the calibrated threshold is measured on wordings the
classifier never saw (cf. Liu et al. 2024, *ECO*, who pick the classifier threshold on held-out
prompts).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from filters.forget_index import ForgetIndex
    from proxy.core.config import QAExample

NEGATIVES_FILE = Path(__file__).with_name("generic_negatives.txt")

_WH_IS = re.compile(r"^(what|who|where|when|which)\s+(is|are|was|were)\s+(.+?)\??$", re.IGNORECASE)
_CAN_YOU = re.compile(r"^(can|could|would) you\s+(.+?)\??$", re.IGNORECASE)

TRAIN_TEMPLATES = (
    "{q}",
    "Quick question: {q}",
    "{q} Please answer briefly.",
    "Do you know {lower}",
    "I was wondering, {lower}",
    "{bare}",
)
CALIBRATION_TEMPLATES = (
    "Hey, can you tell me this: {lower}",
    "{bare} - explain please",
    "I need to know. {q}",
    "{rewrite}",
    "My friend asked me: {q} What would you say?",
)


@lru_cache(maxsize=1)
def generic_negatives() -> tuple[str, ...]:
    """The generic negative requests (comments and blank lines skipped)."""
    lines = NEGATIVES_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def negatives_sha256() -> str:
    """A content hash of the generic negatives (part of the classifier's cache key)."""
    return hashlib.sha256(NEGATIVES_FILE.read_bytes()).hexdigest()


def _rewrite(question: str) -> str:
    """A light syntactic rewrite: "What is X?" -> "Tell me X.", "Can you X?" -> "Please X."."""
    text = question.strip()
    match = _WH_IS.match(text)
    if match:
        return f"Tell me {match.group(1).lower()} {match.group(3)} {match.group(2)}."
    match = _CAN_YOU.match(text)
    if match:
        return f"Please {match.group(2)}."
    return text.rstrip("?") + ", I'd like to know."


def _fields(question: str) -> dict[str, str]:
    text = question.strip()
    lower = text[:1].lower() + text[1:] if not text[1:2].isupper() else text
    bare = re.sub(r"[^\w\s'-]", " ", text).lower()
    return {"q": text, "lower": lower, "bare": " ".join(bare.split()), "rewrite": _rewrite(text)}


def rephrase(question: str, templates: tuple[str, ...], *, count: int) -> list[str]:
    """``count`` distinct templated rephrasings, picked deterministically from ``question``."""
    fields = _fields(question)
    start = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    out: list[str] = []
    for offset in range(len(templates)):
        text = templates[(start + offset) % len(templates)].format(**fields)
        if text not in out:
            out.append(text)
        if len(out) == count:
            break
    return out


@dataclass
class TrainingSet:
    """Texts with labels, groups (held out together) and roles (:func:`collect_training_set`)."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def add(self, texts: Sequence[str], label: int, group: int, role: str) -> None:
        for text in texts:
            self.texts.append(text)
            self.labels.append(label)
            self.groups.append(group)
            self.roles.append(role)


def collect_training_set(index: ForgetIndex, retain: Sequence[QAExample]) -> TrainingSet:
    """Forget items (+ rephrased questions) as positives; retain and generic as negatives.

    Roles: ``calib`` positives are scored out-of-fold for calibration, ``heldout`` ones
    (unseen-template paraphrases) are only scored, never trained on.
    """
    samples = TrainingSet()
    has_questions = any(item.kind == "question" for item in index.items)
    for group, item in enumerate(index.items):
        calibrates = item.kind == "question" or (not has_questions and item.kind != "name")
        samples.add([item.text], 1, group, "calib" if calibrates else "forget")
        if item.kind == "question":
            samples.add(rephrase(item.text, TRAIN_TEMPLATES[1:], count=2), 1, group, "forget")
            samples.add(rephrase(item.text, CALIBRATION_TEMPLATES, count=2), 1, group, "heldout")
    group = len(index.items)
    for qa in retain:
        group += 1
        samples.add(
            [qa.question, *rephrase(qa.question, TRAIN_TEMPLATES[1:], count=1)], 0, group, "retain"
        )
        samples.add([qa.answer] if qa.answer else [], 0, group, "retain_answer")
    for text in generic_negatives():
        group += 1
        samples.add([text, *rephrase(text, TRAIN_TEMPLATES[1:], count=1)], 0, group, "generic")
    return samples


DEFAULT_THRESHOLD = 0.5
MIN_CALIBRATION_POSITIVES = 5


@dataclass(frozen=True)
class CalibrationReport:
    """How the threshold was chosen and what it costs, from out-of-fold scores."""

    threshold: float
    source: str
    target_fnr: float
    heldout_fnr: float | None
    fpr_retain: float | None
    fpr_generic: float | None
    n_positive: int
    n_retain: int
    n_generic: int
    folds: int

    def summary(self) -> str:
        """One line for ``unlearn-proxy check-config``."""

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}%"

        return (
            f"threshold {self.threshold:.3f} ({self.source}, target FNR {pct(self.target_fnr)}): "
            f"held-out FNR {pct(self.heldout_fnr)} on {self.n_positive} forget questions and "
            "paraphrases, "
            f"FPR {pct(self.fpr_retain)} on {self.n_retain} retain, {pct(self.fpr_generic)} on "
            f"{self.n_generic} generic ({self.folds}-fold)"
        )


@dataclass
class Calibration:
    """Out-of-fold scores by role; turns any threshold into a :class:`CalibrationReport`."""

    target_fnr: float
    folds: int
    positive: np.ndarray = field(default_factory=lambda: np.zeros(0))
    retain: np.ndarray = field(default_factory=lambda: np.zeros(0))
    generic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    out_of_fold: dict[str, float] = field(default_factory=dict)

    def calibrated_threshold(self) -> float | None:
        """The highest threshold whose held-out FNR is at most ``target_fnr``."""
        if len(self.positive) < MIN_CALIBRATION_POSITIVES:
            return None
        ranked = np.sort(self.positive)
        return float(ranked[int(np.floor(self.target_fnr * len(ranked)))])

    def report(self, threshold: float | None = None) -> CalibrationReport:
        """Stats at ``threshold`` (the configured one) or at the calibrated one."""
        source = "config"
        if threshold is None:
            threshold = self.calibrated_threshold()
            source = "calibrated" if threshold is not None else "default"
            threshold = DEFAULT_THRESHOLD if threshold is None else threshold

        def rate(scores: np.ndarray, below: bool) -> float | None:
            if not len(scores):
                return None
            return float(np.mean(scores < threshold) if below else np.mean(scores >= threshold))

        return CalibrationReport(
            threshold,
            source,
            self.target_fnr,
            rate(self.positive, True),
            rate(self.retain, False),
            rate(self.generic, False),
            len(self.positive),
            len(self.retain),
            len(self.generic),
            self.folds,
        )
