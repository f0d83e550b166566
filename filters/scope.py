"""The scope check: is a request about a forget target, or about something next to it?

A similarity threshold alone cannot tell "Who wrote Carrie?" (a target's work) from "Who
directed The Shining?" (a neighbour's): both sit close to the target's documents. The scope
check weighs both sides of the policy. Each query text is described by a few numbers — its
similarity to the nearest forget items (all of them, the nearest example question, the nearest
document chunk), to the nearest retain examples, the gap between the two sides, whether it
names a target (:mod:`filters.alias_matcher`, through every decoded view) and, by default, the
input classifier's logit (:mod:`filters.input_classifier`, trained on the same material) — and
a logistic head over those numbers gives the probability that the text is about a target (cf.
the GovTech off-topic guardrail, Chua et al. 2024, which scores (policy, query) pairs; ECO, Liu
et al. 2024, which thresholds a prompt classifier on held-out data). Each weight keeps its
sign: nothing that makes a text more like a retain example can raise its score.

The head is trained on the policy's own material, never on probes: the forget targets' example
questions are the positives and the retain examples the negatives, each described
leave-itself-out (its own entry hidden from its neighbours, the classifier's out-of-fold score),
so training sees what an unseen paraphrase sees; the project's generic negatives
(:func:`filters.negatives.generic_negatives`) join them in a policy with few retain examples,
and are otherwise only scored for the report. The similarity features name no target, so the
head is the same for every target: with ``classifier: false`` a target added at run time needs
only its items in the index (refitting the head is a logistic regression over eight columns).
The threshold is calibrated out-of-fold to ``target_fnr`` of the example questions, or lower
while held-out negatives stay unflagged (:class:`ScopeCalibration`). A text at
least as close to a retain example as to any forget item is never blocked unless it names a
target, so every retain example that names no target is answered. With ``aliases`` (the
default) a target's name or alias in any text or decoded view blocks before any scoring, as an
exact-match store in front of a scoring model does (DRAGON, 2025): a question asked backwards,
spelled out or in ROT13 with its answer requested the same way is refused on the name alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

from filters.alias_matcher import AliasGuard, AliasTable, find_in_views
from filters.base import Match, Message, Verdict
from filters.embedder import Embedder
from filters.forget_index import ForgetIndex, ForgetItem
from filters.input_classifier import ClassifierModel
from filters.input_detector import DEFAULT_CONTEXT_TURNS, query_views
from filters.negatives import (
    TRAIN_TEMPLATES, Calibration, CalibrationReport, generic_negatives, rephrase,
)
from proxy.core.config import ScopeConfig

if TYPE_CHECKING:
    from filters.artifacts import PolicyArtifacts

FEATURES = (
    "forget_top1", "forget_top3", "retain_top1", "retain_top3", "gap", "forget_question",
    "forget_chunk", "names_target",
)
CLASSIFIER_FEATURE = "classifier_logit"  # appended when the input classifier is weighed too
SIGNS = {"retain_top1": -1, "retain_top3": -1}  # the sign each weight must have; others +1
MAX_LOGIT = 10.0
SEARCH_K = 8  # forget items looked at per text; the nearest question/chunk is found among them
FOLDS = 5
MAX_HELDOUT_FPR = 0.01  # a threshold this low still flags at most 1 % of held-out negatives...
DECISION = 0.5  # ...is used down to the balanced decision boundary (ScopeCalibration)
MIN_RETAIN = 20  # below this many retain examples the generic negatives train the head too
MIN_EXAMPLES = 50  # below this many example questions they are reworded into more positives
REWORDINGS = 3


def _top(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best value and the mean of its best ``k`` (-1 for an empty side)."""
    if not sims.shape[1]:
        empty = np.full(len(sims), -1.0)
        return empty, empty
    best = -np.sort(-sims, axis=1)[:, :k]
    return best[:, 0], best.mean(axis=1)


@dataclass(frozen=True)
class Described:
    """A batch of texts as the head sees them, and each one's nearest forget item."""

    features: np.ndarray
    nearest: list[ForgetItem | None]


class ScopeFeaturizer:
    """The numbers :attr:`features` of query texts against one policy."""

    def __init__(
        self,
        index: ForgetIndex,
        retain: np.ndarray,
        aliases: AliasTable,
        *,
        classifier: ClassifierModel | None = None,
        out_of_fold: dict[str, float] | None = None,
    ) -> None:
        self.index = index
        self.retain = retain if len(retain) else np.zeros((0, index.dim), np.float32)
        self.aliases = aliases
        self.classifier = classifier
        self.out_of_fold = out_of_fold or {}
        self.features = FEATURES + ((CLASSIFIER_FEATURE,) if classifier is not None else ())

    def describe(
        self,
        vectors: np.ndarray,
        texts: Sequence[str],
        *,
        hide_items: Sequence[str | None] | None = None,
        hide_retain: Sequence[int | None] | None = None,
        training: bool = False,
    ) -> Described:
        """Features of each text; ``hide_items``/``hide_retain`` hide each text's own forget
        item id / retain row from its neighbours, and ``training`` takes the classifier's
        out-of-fold score of a text it was trained on, so no row sees itself."""
        hits = self.index.search(vectors, k=SEARCH_K + 1)
        forget = np.full((len(texts), SEARCH_K), -1.0)
        question = np.full(len(texts), -1.0)
        chunk = np.full(len(texts), -1.0)
        nearest: list[ForgetItem | None] = []
        for row, found in enumerate(hits):
            hidden = hide_items[row] if hide_items is not None else None
            kept = [(s, item) for s, item in found if item.id != hidden][:SEARCH_K]
            nearest.append(kept[0][1] if kept else None)
            forget[row, : len(kept)] = [s for s, _ in kept]
            floor = kept[-1][0] if kept else -1.0  # none among the nearest: at most the last's
            question[row] = max((s for s, i in kept if i.kind == "question"), default=floor)
            chunk[row] = max((s for s, i in kept if i.kind == "chunk"), default=floor)
        retain = np.asarray(vectors @ self.retain.T, dtype=np.float64)
        if hide_retain is not None:
            for row, own in enumerate(hide_retain):
                if own is not None:
                    retain[row, own] = -1.0
        f1, f3 = _top(forget, 3)
        r1, r3 = _top(retain, 3)
        named = np.array([find_in_views(self.aliases, t) is not None for t in texts], float)
        columns = [f1, f3, r1, r3, f1 - r1, question, chunk, named]
        if self.classifier is not None:
            columns.append(self._classifier_logit(vectors, texts, training))
        return Described(np.c_[tuple(columns)].reshape(len(texts), len(self.features)), nearest)

    def _classifier_logit(self, vectors: np.ndarray, texts: Sequence[str],
                          training: bool) -> np.ndarray:
        assert self.classifier is not None
        known = self.out_of_fold if training else {}
        unseen = [i for i, text in enumerate(texts) if text not in known]
        probability = np.array([known.get(text, 0.0) for text in texts])
        if unseen:
            probability[unseen] = self.classifier.predict(vectors[unseen],
                                                          [texts[i] for i in unseen])
        probability = np.clip(probability, 1e-6, 1 - 1e-6)
        logit: np.ndarray = np.clip(np.log(probability / (1 - probability)), -MAX_LOGIT, MAX_LOGIT)
        return logit


class ScopeHead:
    """A class-balanced, L2-regularised logistic regression over :data:`FEATURES` whose weights
    keep the sign each feature must have (:data:`SIGNS`): more like the forget side or naming a
    target never lowers the probability, more like the retain side never raises it — so a thin
    policy cannot learn that resembling a retain example is evidence of a target."""

    def __init__(
        self, features: np.ndarray, labels: np.ndarray, names: Sequence[str], *, c: float = 1.0
    ) -> None:
        x = np.c_[features, np.ones(len(features))]
        counts = np.bincount(labels.astype(int), minlength=2)
        weight = np.where(labels == 1, len(labels) / (2 * counts[1]), len(labels) / (2 * counts[0]))
        sign = 2.0 * labels - 1.0

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            margin = sign * (x @ w)
            value = float(weight @ np.logaddexp(0.0, -margin)) + 0.5 * float(w[:-1] @ w[:-1]) / c
            grad = x.T @ (-weight * sign * expit(-margin))
            grad[:-1] += w[:-1] / c
            return value, grad

        bounds = [(None, 0) if SIGNS.get(name, 1) < 0 else (0, None) for name in names]
        bounds.append((None, None))
        fitted = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
        self.weights = fitted.x[:-1]
        self.bias = float(fitted.x[-1])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The probability that each described text is about a forget target."""
        probabilities: np.ndarray = expit(features @ self.weights + self.bias)
        return probabilities


@dataclass
class ScopeCalibration(Calibration):
    """:class:`Calibration` that is never stricter than it needs to be: when a lower threshold
    (down to :data:`DECISION`) still flags at most :data:`MAX_HELDOUT_FPR` of the held-out
    negatives, it is used, so a policy whose sides separate cleanly (fictitious authors) does
    not refuse only near-certain texts and let a reworded or decoded question through."""

    def calibrated_threshold(self) -> float | None:
        by_fnr = super().calibrated_threshold()
        negatives = np.r_[self.retain, self.generic]
        if by_fnr is None or not len(negatives):
            return by_fnr
        enough = max(DECISION, float(np.quantile(negatives, 1 - MAX_HELDOUT_FPR)))
        return min(by_fnr, enough)


@dataclass(frozen=True)
class TrainingRows:
    """Described texts: features, labels, roles (``positive``/``retain``/``generic``) and
    whether each row trains the head (the others are only scored)."""

    features: np.ndarray
    labels: np.ndarray
    roles: np.ndarray
    trains: np.ndarray


def training_rows(
    featurizer: ScopeFeaturizer, retain_texts: Sequence[str], embedder: Embedder
) -> TrainingRows:
    """The policy's example questions (positives; every non-name item when it has none, every
    item when it has only names) and
    its retain examples (negatives), each described leave-itself-out, and the generic negatives
    (label 0: the head trains on them only when the policy lists fewer than
    :data:`MIN_RETAIN` retain examples, else they are scored for the report)."""
    index = featurizer.index
    ids = [i for i, item in enumerate(index.items) if item.kind == "question"]
    if not ids:
        ids = [i for i, item in enumerate(index.items) if item.kind != "name"]
    ids = ids or list(range(len(index.items)))
    items = [index.items[i] for i in ids]
    positive = featurizer.describe(index.vectors[ids], [item.text for item in items],
                                   hide_items=[item.id for item in items], training=True).features
    if len(items) < MIN_EXAMPLES:  # a thin policy: its questions reworded too (own item hidden)
        reworded = [(text, item) for item in items if item.kind == "question"
                    for text in rephrase(item.text, TRAIN_TEMPLATES[1:], count=REWORDINGS)]
        if reworded:
            texts = [text for text, _ in reworded]
            positive = np.r_[positive, featurizer.describe(
                embedder.embed(texts), texts, hide_items=[item.id for _, item in reworded],
                training=True).features]
    retain = featurizer.describe(featurizer.retain, retain_texts, training=True,
                                 hide_retain=list(range(len(retain_texts)))).features
    generic_texts = list(generic_negatives())
    generic = featurizer.describe(embedder.embed(generic_texts), generic_texts,
                                  training=True).features
    parts = ((positive, 1, "positive"), (retain, 0, "retain"), (generic, 0, "generic"))
    return TrainingRows(
        np.concatenate([rows for rows, _, _ in parts]),
        np.concatenate([np.full(len(rows), label) for rows, label, _ in parts]),
        np.concatenate([np.full(len(rows), role) for rows, _, role in parts]),
        trains=np.concatenate([np.full(len(rows), role != "generic" or len(retain) < MIN_RETAIN)
                               for rows, _, role in parts]),
    )


def train_scope(
    featurizer: ScopeFeaturizer,
    retain_texts: Sequence[str],
    embedder: Embedder,
    *,
    target_fnr: float,
    seed: int = 0,
) -> tuple[ScopeHead, ScopeCalibration]:
    """Calibrate by stratified k-fold (out-of-fold scores by role), then fit on every row.

    Raises:
        ValueError: the policy has no forget items.
    """
    if not len(featurizer.index):
        raise ValueError("a scope check needs at least one forget item")
    rows = training_rows(featurizer, retain_texts, embedder)
    features, labels = rows.features[rows.trains], rows.labels[rows.trains]
    calibration = ScopeCalibration(target_fnr, FOLDS)
    folds = min(FOLDS, int(labels.sum()), int((labels == 0).sum()))
    if folds >= 2:
        scores = np.zeros(len(rows.labels))
        trained = np.flatnonzero(rows.trains)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(features, labels):
            head = ScopeHead(features[train], labels[train], featurizer.features)
            scores[trained[test]] = head.predict(features[test])
        head = ScopeHead(features, labels, featurizer.features)
        scores[~rows.trains] = head.predict(rows.features[~rows.trains])
        calibration.positive = scores[rows.roles == "positive"]
        calibration.retain = scores[rows.roles == "retain"]
        calibration.generic = scores[rows.roles == "generic"]
        return head, calibration
    return ScopeHead(features, labels, featurizer.features), calibration


class ScopeGuard:
    """Blocks requests the scope head scores at or above its threshold; names the nearest item."""

    cost_rank = 1

    def __init__(
        self,
        head: ScopeHead,
        featurizer: ScopeFeaturizer,
        embedder: Embedder,
        *,
        report: CalibrationReport,
        context_turns: int = DEFAULT_CONTEXT_TURNS,
        aliases: AliasGuard | None = None,
        name: str = "scope",
    ) -> None:
        self.head = head
        self.featurizer = featurizer
        self.embedder = embedder
        self.report = report
        self.threshold = report.threshold
        self.context_turns = context_turns
        self.aliases = aliases
        self.name = name

    def score_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, Described]:
        """Each text's probability; 0 where a retain example is as near as any forget item and
        the text names no target."""
        described = self.featurizer.describe(self.embedder.embed(list(texts)), texts)
        features = described.features
        closer_to_forget = features[:, FEATURES.index("gap")] > 0
        named = features[:, FEATURES.index("names_target")] > 0
        return np.where(closer_to_forget | named, self.head.predict(features), 0.0), described

    def check_input(self, messages: Sequence[Message]) -> Verdict:
        """A target's name or alias in any text and view blocks at once (with ``aliases``);
        otherwise score every view of the request's texts (:func:`query_views`) and block on
        the worst."""
        started = time.perf_counter()
        named = self.aliases.check_input(messages) if self.aliases is not None else None
        if named is not None and named.is_block:
            return replace(named, guard=self.name,
                           elapsed_ms=(time.perf_counter() - started) * 1000)
        found = query_views(messages, self.context_turns)
        if not found:
            return Verdict("allow", self.name, threshold=self.threshold, elapsed_ms=0.0)
        scores, described = self.score_texts([view.text for view in found])
        best = int(np.argmax(scores))
        score = float(scores[best])
        match, item = None, described.nearest[best]
        if score >= self.threshold and item is not None:
            evidence = f"p={score:.3f} nearest: {item.text[:160]} <~ {found[best].text[:160]}"
            match = Match(item.target_id, item.id, evidence, found[best].transform)
        return Verdict(
            "block" if match is not None else "allow",
            self.name,
            score=score,
            threshold=self.threshold,
            match=match,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def __repr__(self) -> str:
        return f"ScopeGuard(threshold={self.threshold:.3f})"


def build_scope(cfg: ScopeConfig, artifacts: PolicyArtifacts) -> ScopeGuard:
    """The ``scope`` guard, trained or loaded; a configured ``threshold`` overrides."""
    head, calibration, featurizer = artifacts.scope(target_fnr=cfg.target_fnr,
                                                    classifier=cfg.classifier)
    return ScopeGuard(head, featurizer, artifacts.embedder,
                      report=calibration.report(cfg.threshold), context_turns=cfg.context_turns,
                      aliases=AliasGuard(artifacts.aliases) if cfg.aliases else None)
