"""A calibrated prompt classifier: is this request about a forget target?

Following Liu et al. 2024 (*ECO*), a light classifier over sentence embeddings decides whether a
prompt concerns the forget set, with a threshold chosen on held-out data; Thaker et al. 2024 use
the same kind of input filter as an unlearning baseline. Features are the MiniLM embedding, the
similarity to the nearest forget item and to the nearest negative example (and their gap), and,
optionally, hashed character n-gram TF-IDF of the normalised text; the model is a class-balanced
logistic regression. The neighbour similarities are computed leave-own-group-out in training.
Positives: every forget item (names, descriptions, questions, answers, document chunks) plus
templated rephrasings; negatives: the policy's retain examples and the
generic negatives. Calibration is grouped k-fold: out-of-fold scores of the forget questions and
of *unseen-template* paraphrases of them fix the threshold at ``target_fnr``; out-of-fold retain
and generic scores give the false-positive rates reported by ``check-config``. Retain examples
are cut into contiguous folds, so examples listed together (usually about one neighbour) are held
out together and the reported FPR is that of an unseen neighbour.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faiss
import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression

from filters.base import Match, Message, Verdict
from filters.embedder import Embedder
from filters.forget_index import ForgetIndex
from filters.input_detector import DEFAULT_CONTEXT_TURNS, query_views
from filters.negatives import (
    Calibration,
    CalibrationReport,
    TrainingSet,
    collect_training_set,
)
from filters.normalize import normalize
from proxy.core.config import InputClassifierConfig, QAExample

if TYPE_CHECKING:
    from filters.artifacts import PolicyArtifacts

NEIGHBOUR_WEIGHT = 3.0


def _max_similarity(
    queries: np.ndarray, refs: np.ndarray, query_groups: np.ndarray | None, ref_groups: np.ndarray
) -> np.ndarray:
    """Each query's best cosine to ``refs``, ignoring refs of its own group (when given)."""
    out = np.zeros(len(queries))
    if not len(refs) or not len(queries):
        return out
    if query_groups is None:
        scores, _ = faiss.knn(
            np.ascontiguousarray(queries, dtype=np.float32),
            np.ascontiguousarray(refs, dtype=np.float32),
            1,
            metric=faiss.METRIC_INNER_PRODUCT,
        )
        return scores[:, 0].astype(np.float64)
    for start in range(0, len(queries), 512):
        sims = queries[start : start + 512] @ refs.T
        if query_groups is not None:
            sims[query_groups[start : start + 512, None] == ref_groups[None, :]] = -1.0
        out[start : start + 512] = sims.max(axis=1)
    return out


class Featurizer:
    """Embedding ⊕ neighbour similarities ⊕ (optional) char n-gram TF-IDF of the normalised text."""

    def __init__(
        self,
        *,
        char_ngrams: bool,
        forget: np.ndarray,
        negatives: np.ndarray,
        negative_groups: np.ndarray,
    ) -> None:
        self.char_ngrams = char_ngrams
        self._forget, self._forget_groups = forget, np.arange(len(forget))
        self._negatives, self._negative_groups = negatives, negative_groups
        self._hasher = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 5),
            n_features=2**18,
            alternate_sign=False,
            norm=None,
        )
        self._tfidf = TfidfTransformer(sublinear_tf=True)

    def fit(self, texts: Sequence[str]) -> Featurizer:
        """Fit the TF-IDF weights (unsupervised) on the training texts."""
        if self.char_ngrams:
            self._tfidf.fit(self._hasher.transform([normalize(t) for t in texts]))
        return self

    def _dense(self, vectors: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """The embedding and the neighbour-similarity columns."""
        to_forget = _max_similarity(vectors, self._forget, groups, self._forget_groups)
        to_negative = _max_similarity(vectors, self._negatives, groups, self._negative_groups)
        near = np.c_[to_forget, to_negative, to_forget - to_negative] * NEIGHBOUR_WEIGHT
        return np.c_[np.asarray(vectors, dtype=np.float64), near]

    def transform(
        self, vectors: np.ndarray, texts: Sequence[str], groups: np.ndarray | None = None
    ) -> sparse.csr_matrix:
        """Features; ``groups`` (training only) hides each text's own group from the neighbours."""
        parts = [sparse.csr_matrix(self._dense(vectors, groups))]
        if self.char_ngrams:
            _, weights, columns, indptr = self._ngram_tfidf(texts)
            parts.append(sparse.csr_matrix((weights, columns, indptr),
                                           shape=(len(texts), self._hasher.n_features)))
        return sparse.hstack(parts, format="csr")

    def dot(self, vectors: np.ndarray, texts: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """``transform(vectors, texts) @ weights`` without building any sparse matrix."""
        dense = self._dense(vectors, None)
        out: np.ndarray = dense @ weights[: dense.shape[1]]
        if self.char_ngrams:
            rows, values, columns, _ = self._ngram_tfidf(texts)
            out += np.bincount(rows, values * weights[dense.shape[1] + columns], minlength=len(texts))
        return out

    def _ngram_tfidf(
        self, texts: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``TfidfTransformer.transform`` of the hashed n-gram counts as CSR arrays (row of each
        value, values, columns, row pointers), computed without sklearn's per-call checks or
        scipy matrices (this runs on every request): sublinear tf × idf, rows L2-normed."""
        counts = self._hasher.transform([normalize(t) for t in texts])
        rows = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))
        values = np.log(counts.data.astype(np.float64)) + 1.0
        values *= self._tfidf.idf_[counts.indices]
        norms = np.sqrt(np.bincount(rows, values**2, minlength=len(texts)))
        values /= np.maximum(norms, 1e-300)[rows]
        return rows, values, counts.indices, counts.indptr


class ClassifierModel:
    """A fitted class-balanced logistic regression over :class:`Featurizer` features."""

    def __init__(
        self,
        featurizer: Featurizer | None,
        features: sparse.csr_matrix,
        labels: np.ndarray,
        *,
        seed: int = 0,
    ) -> None:
        self.featurizer = featurizer
        self._lr = LogisticRegression(
            C=4.0, class_weight="balanced", max_iter=2000, random_state=seed
        )
        self._lr.fit(features, labels)

    def predict_features(self, features: sparse.csr_matrix) -> np.ndarray:
        """``predict_proba(features)[:, 1]`` of the fitted logistic regression, computed as
        ``sigmoid(features · w + b)`` without sklearn's per-call input checks."""
        return self._sigmoid(np.asarray(features @ self._lr.coef_[0], dtype=np.float64).ravel())

    def predict(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The probability that each text is about a forget target."""
        if self.featurizer is None:
            raise RuntimeError("this model was fitted on precomputed features only")
        return self._sigmoid(self.featurizer.dot(vectors, texts, self._lr.coef_[0]))

    def _sigmoid(self, scores: np.ndarray) -> np.ndarray:
        """The regression's probability from ``features · w`` (its intercept added here)."""
        probabilities: np.ndarray = expit(scores + self._lr.intercept_[0])
        return probabilities


def _embed(
    samples: TrainingSet, index: ForgetIndex, embedder: Embedder, progress: bool
) -> np.ndarray:
    from tqdm import tqdm

    known = {item.text: vec for item, vec in zip(index.items, index.vectors, strict=True)}
    missing = list(dict.fromkeys(t for t in samples.texts if t not in known))
    batches = [missing[i : i + 256] for i in range(0, len(missing), 256)]
    for batch in tqdm(
        batches, desc="embedding classifier data", unit="batch", disable=not progress
    ):
        known.update(zip(batch, embedder.embed(batch), strict=True))
    return (
        np.stack([known[t] for t in samples.texts]) if samples.texts else np.zeros((0, index.dim))
    )


def _folds(samples: TrainingSet, folds: int, seed: int) -> np.ndarray:
    """Random folds by group; retain examples in contiguous blocks (see the module docstring)."""
    groups, roles = np.array(samples.groups), np.array(samples.roles)
    fold_of = np.random.default_rng(seed).permutation(groups.max() + 1)[groups] % folds
    is_retain = np.isin(roles, ("retain", "retain_answer"))
    if is_retain.any():
        retain_groups = groups[is_retain] - groups[is_retain].min()
        fold_of[is_retain] = retain_groups * folds // (retain_groups.max() + 1)
    folds_array: np.ndarray = fold_of
    return folds_array


def _cross_validate(
    samples: TrainingSet, features: sparse.csr_matrix, calibration: Calibration, seed: int
) -> None:
    """Fill ``calibration`` with out-of-fold scores of forget questions, retain and generic,
    and with every training text's out-of-fold score (``out_of_fold``, by text)."""
    labels, roles = np.array(samples.labels), np.array(samples.roles)
    fold_of = _folds(samples, calibration.folds, seed)
    scores = np.zeros(len(labels))
    for fold in range(calibration.folds):
        train = (roles != "heldout") & (fold_of != fold)
        model = ClassifierModel(None, features[train], labels[train], seed=seed)
        held = fold_of == fold
        if held.any():
            scores[held] = model.predict_features(features[held])
    wanted = {"positive": ("calib", "heldout"), "retain": ("retain",), "generic": ("generic",)}
    for key, kinds in wanted.items():
        setattr(calibration, key, scores[np.isin(roles, kinds)])
    calibration.out_of_fold = dict(zip(samples.texts, scores.tolist(), strict=True))


def train_classifier(
    index: ForgetIndex,
    retain: Sequence[QAExample],
    embedder: Embedder,
    *,
    char_ngrams: bool = True,
    target_fnr: float = 0.05,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> tuple[ClassifierModel, Calibration]:
    """Calibrate by grouped k-fold, then fit the final model on all training samples.

    Raises:
        ValueError: the index has no forget items.
    """
    if not len(index):
        raise ValueError("an input classifier needs at least one forget item")
    samples = collect_training_set(index, retain)
    vectors = _embed(samples, index, embedder, progress)
    labels, groups = np.array(samples.labels), np.array(samples.groups)
    featurizer = Featurizer(
        char_ngrams=char_ngrams,
        forget=index.vectors,
        negatives=vectors[labels == 0],
        negative_groups=groups[labels == 0],
    ).fit(samples.texts)
    features = featurizer.transform(vectors, samples.texts, groups)
    calibration = Calibration(target_fnr, folds)
    _cross_validate(samples, features, calibration, seed)
    trainable = np.array(samples.roles) != "heldout"
    return ClassifierModel(
        featurizer, features[trainable], labels[trainable], seed=seed
    ), calibration


class InputClassifier:
    """Blocks requests the classifier scores at or above its threshold; names the nearest item."""

    cost_rank = 2

    def __init__(
        self,
        model: ClassifierModel,
        embedder: Embedder,
        index: ForgetIndex,
        *,
        report: CalibrationReport,
        context_turns: int = DEFAULT_CONTEXT_TURNS,
        name: str = "input_classifier",
    ) -> None:
        self.model = model
        self.embedder = embedder
        self.index = index
        self.report = report
        self.threshold = report.threshold
        self.context_turns = context_turns
        self.name = name

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The classifier probability of each text."""
        if not texts:
            return np.zeros(0)
        return self.model.predict(self.embedder.embed(list(texts)), texts)

    def check_input(self, messages: Sequence[Message]) -> Verdict:
        """Score the last user turn and the recent turns joined; block on the higher score."""
        started = time.perf_counter()
        found = query_views(messages, self.context_turns)
        texts = [view.text for view in found]
        if not texts:
            return Verdict("allow", self.name, threshold=self.threshold, elapsed_ms=0.0)
        scores = self.score_texts(texts)
        best = int(np.argmax(scores))
        score = float(scores[best])
        match = None
        if score >= self.threshold:
            hits = self.index.search(self.embedder.embed([texts[best]]), k=1)[0]
            if hits:
                item = hits[0][1]
                evidence = f"p={score:.3f} nearest: {item.text[:160]}"
                match = Match(item.target_id, item.id, evidence, found[best].transform)
        return Verdict(
            "block" if score >= self.threshold else "allow",
            self.name,
            score=score,
            threshold=self.threshold,
            match=match,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    def __repr__(self) -> str:
        return f"InputClassifier(threshold={self.threshold:.3f})"


def build_input_classifier(
    cfg: InputClassifierConfig, artifacts: PolicyArtifacts
) -> InputClassifier:
    """The ``input_classifier`` guard, trained or loaded; a configured ``threshold`` overrides."""
    model, calibration = artifacts.classifier(
        char_ngrams=cfg.char_ngrams, target_fnr=cfg.target_fnr
    )
    report = calibration.report(cfg.threshold)
    return InputClassifier(model, artifacts.embedder, artifacts.index, report=report)
