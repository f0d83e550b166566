from __future__ import annotations

import numpy as np
import pytest

from filters.negatives import DEFAULT_THRESHOLD, Calibration


def _calibration(positive: list[float], retain: list[float], generic: list[float]) -> Calibration:
    return Calibration(0.1, 5, np.array(positive), np.array(retain), np.array(generic))


def test_calibrated_threshold_meets_the_target_fnr() -> None:
    positive = np.linspace(0.05, 0.95, 19).tolist() + [0.99]
    report = _calibration(positive, [0.1, 0.2, 0.9], [0.0, 0.01]).report()
    assert report.source == "calibrated"
    assert report.threshold == pytest.approx(0.15)
    assert report.heldout_fnr == pytest.approx(0.1)
    assert report.fpr_retain == pytest.approx(2 / 3)
    assert report.fpr_generic == 0.0
    assert (report.n_positive, report.n_retain, report.n_generic, report.folds) == (20, 3, 2, 5)


def test_configured_threshold_overrides_calibration() -> None:
    report = _calibration([0.2, 0.4, 0.6, 0.8, 1.0], [0.5], [0.3]).report(0.7)
    assert report.source == "config"
    assert report.threshold == 0.7
    assert report.heldout_fnr == pytest.approx(0.6)
    assert report.fpr_retain == 0.0


def test_too_few_positives_fall_back_to_the_default() -> None:
    report = _calibration([0.9, 0.8], [], [0.1]).report()
    assert report.source == "default" and report.threshold == DEFAULT_THRESHOLD
    assert report.fpr_retain is None
    assert "n/a" in report.summary()


def test_summary_names_every_figure() -> None:
    summary = _calibration([0.5] * 10, [0.1] * 4, [0.2] * 3).report().summary()
    for part in (
        "threshold 0.500",
        "calibrated",
        "target FNR 10.0%",
        "held-out FNR 0.0%",
        "FPR 0.0% on 4 retain",
        "on 3 generic",
        "5-fold",
    ):
        assert part in summary


def test_fast_inference_equals_sklearn() -> None:
    """Per-request TF-IDF and probabilities skip sklearn's checks but give its numbers."""
    from sklearn.feature_extraction.text import TfidfTransformer

    from filters.input_classifier import ClassifierModel, Featurizer
    from filters.normalize import normalize

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        rows = rng.normal(size=(n, 8))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    texts = [f"Where was author number {i} born, and what did {i % 3} write?" for i in range(40)]
    texts += ["", "Zz"]
    featurizer = Featurizer(char_ngrams=True, forget=unit(5), negatives=unit(6),
                            negative_groups=np.arange(6)).fit(texts)
    vectors = unit(len(texts))
    reference = TfidfTransformer(sublinear_tf=True).fit(
        featurizer._hasher.transform([normalize(t) for t in texts[:30]]))
    featurizer._tfidf = reference
    hashed = featurizer._hasher.transform([normalize(t) for t in texts])
    expected = reference.transform(hashed).toarray()
    features = featurizer.transform(vectors, texts)
    assert np.allclose(features[:, vectors.shape[1] + 3:].toarray(), expected, atol=1e-12)
    labels = np.arange(len(texts)) % 2
    model = ClassifierModel(featurizer, features, labels)
    assert np.allclose(model.predict(vectors, texts),
                       model._lr.predict_proba(features)[:, 1], atol=1e-12)
