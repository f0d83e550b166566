"""Tests for icul.erase: exact deletion, order independence, semantics, and cost on TOFU."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icul.erase import DEFAULT_EPSILON, EraseSelector
from icul.errors import InvalidInputError, UnknownExampleError


def _pool(seed: int, n: int, dim: int, centres: int, spread: float) -> tuple[list[str], np.ndarray]:
    """Random L2-normalised points around a few centres, with random string ids."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    x = means[rng.integers(0, centres, n)] + rng.normal(scale=spread, size=(n, dim))
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    ids = [f"{rng.integers(0, 10**6)}-{i}" for i in range(n)]
    return ids, x.astype(np.float32)


def _state(selector: EraseSelector) -> tuple[list[str], dict[str, int], int]:
    return selector.selected(), selector.assignment(), len(selector)


pool_params = {
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(5, 200),
    "dim": st.integers(1, 24),
    "centres": st.integers(1, 8),
    "spread": st.sampled_from([0.02, 0.2, 1.0]),
    "k": st.integers(1, 12),
    "epsilon": st.floats(0.005, 2.0),
    "selector_seed": st.integers(0, 2**31),
    "max_iter": st.integers(1, 20),
}


@settings(max_examples=80, deadline=None)
@given(**pool_params, n_deletions=st.integers(1, 40))
def test_incremental_deletion_equals_fresh_run(
    seed: int, n: int, dim: int, centres: int, spread: float, k: int, epsilon: float,
    selector_seed: int, max_iter: int, n_deletions: int,
) -> None:
    ids, x = _pool(seed, n, dim, centres, spread)
    params = {"k": k, "epsilon": epsilon, "seed": selector_seed, "max_iter": max_iter}
    selector = EraseSelector(ids, x, **params)  # type: ignore[arg-type]
    alive = np.ones(n, dtype=bool)
    for index in np.random.default_rng(seed + 1).permutation(n)[:n_deletions]:
        recomputed = selector.delete(ids[index])
        alive[index] = False
        keep = np.flatnonzero(alive)
        fresh = EraseSelector([ids[i] for i in keep], x[keep], **params)  # type: ignore[arg-type]
        assert _state(selector) == _state(fresh)
        assert isinstance(recomputed, bool)
    assert selector.stats.deletions == min(n_deletions, n)


@settings(max_examples=60, deadline=None)
@given(**pool_params)
def test_result_depends_on_the_set_not_the_order(
    seed: int, n: int, dim: int, centres: int, spread: float, k: int, epsilon: float,
    selector_seed: int, max_iter: int,
) -> None:
    ids, x = _pool(seed, n, dim, centres, spread)
    perm = np.random.default_rng(seed).permutation(n)
    params = {"k": k, "epsilon": epsilon, "seed": selector_seed, "max_iter": max_iter}
    a = EraseSelector(ids, x, **params)  # type: ignore[arg-type]
    b = EraseSelector([ids[i] for i in perm], x[perm], **params)  # type: ignore[arg-type]
    assert _state(a) == _state(b)


def _reference_selection(ids: list[str], x: np.ndarray, k: int, eps: float, seed: int) -> list[str]:
    """Plain float64 Q-k-means written from the documented contract, for cross-checking."""
    order = sorted(range(len(ids)), key=lambda i: (hashlib.blake2b(
        f"{seed}\x1f{ids[i]}".encode(), digest_size=8).digest(), ids[i]))
    unit = 2.0**24
    offset = np.random.default_rng(seed).integers(0, round(eps * unit), size=x.shape[1]) / unit
    eps = round(eps * unit) / unit  # the grid step actually used
    x = np.rint(x.astype(np.float64) * unit) / unit

    def snap(c: np.ndarray) -> np.ndarray:
        return eps * np.floor((c - offset) / eps + 0.5) + offset

    centroids = snap(x[order[:k]])
    for _ in range(20):
        labels = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        moved = np.array([snap(x[labels == j].mean(0)) if np.any(labels == j) else centroids[j]
                          for j in range(k)])
        if np.array_equal(moved, centroids):
            break
        centroids = moved
    labels = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    reps = []
    for j in range(k):
        members = [i for i in range(len(ids)) if labels[i] == j]
        if members:
            reps.append(min(members, key=lambda i: (((x[i] - centroids[j]) ** 2).sum(), ids[i])))
    return [ids[i] for i in reps]


@pytest.mark.parametrize("seed", range(8))
def test_selection_matches_plain_float_reference(seed: int) -> None:
    ids, x = _pool(seed, 120, 8, 5, 0.3)
    selector = EraseSelector(ids, x, k=6, epsilon=0.1, seed=seed)
    assert selector.selected() == _reference_selection(ids, x, 6, 0.1, seed)


def test_clustered_pool_uses_both_deletion_paths() -> None:
    ids, x = _pool(7, 400, 8, 4, 0.2)
    selector = EraseSelector(ids, x, k=4, epsilon=0.5, seed=3)
    results = [selector.delete(i) for i in ids[:100]]
    assert 0 < sum(results) < 50
    assert selector.stats.recomputes == sum(results)
    assert selector.stats.deletions == 100


def test_deleting_a_representative_picks_the_next_nearest_member() -> None:
    ids, x = _pool(11, 300, 6, 3, 0.1)
    selector = EraseSelector(ids, x, k=3, epsilon=0.5, seed=1)
    for _ in range(3):
        representative = selector.selected()[0]
        selector.delete(representative)
        keep = [i for i, id_ in enumerate(ids) if id_ in selector]
        fresh = EraseSelector([ids[i] for i in keep], x[keep], k=3, epsilon=0.5, seed=1)
        assert representative not in selector.selected()
        assert _state(selector) == _state(fresh)


def test_pool_not_larger_than_k_selects_everything() -> None:
    ids, x = _pool(1, 5, 4, 2, 0.5)
    selector = EraseSelector(ids, x, k=5, epsilon=0.2)
    assert sorted(selector.selected()) == sorted(ids)
    assert selector.delete(ids[0]) is False
    assert sorted(selector.selected()) == sorted(ids[1:])
    assert selector.n_iter == 0


def test_shrinking_to_k_switches_to_select_all() -> None:
    ids, x = _pool(2, 6, 4, 2, 0.5)
    selector = EraseSelector(ids, x, k=5, epsilon=0.2)
    assert selector.delete(ids[3]) is True
    assert sorted(selector.selected()) == sorted(ids[:3] + ids[4:])


def test_unknown_and_repeated_deletions_raise() -> None:
    ids, x = _pool(3, 20, 4, 2, 0.5)
    selector = EraseSelector(ids, x, k=3)
    with pytest.raises(UnknownExampleError, match="nope"):
        selector.delete("nope")
    selector.delete(ids[0])
    with pytest.raises(KeyError):
        selector.delete(ids[0])
    assert len(selector) == 19 and ids[0] not in selector


@pytest.mark.parametrize(
    ("ids", "embeddings", "kwargs", "message"),
    [
        (["a", "a"], np.eye(2), {"k": 1}, "unique strings"),
        (["a", "b"], np.eye(3), {"k": 1}, "shape"),
        (["a", "b"], 2 * np.eye(2), {"k": 1}, "L2-normalised"),
        (["a", "b"], np.full((2, 2), np.nan), {"k": 1}, "finite"),
        (["a", "b"], np.eye(2), {"k": 0}, "k must"),
        (["a", "b"], np.eye(2), {"k": 1, "epsilon": 0.0}, "epsilon"),
        (["a", "b"], np.eye(2), {"k": 1, "epsilon": 1e-9}, "epsilon"),
        (["a", "b"], np.eye(2), {"k": 1, "seed": -1}, "seed"),
        (["a", "b"], np.eye(2), {"k": 1, "max_iter": 0}, "max_iter"),
        ([1, 2], np.eye(2), {"k": 1}, "unique strings"),
    ],
)
def test_bad_input_raises(ids: list[str], embeddings: np.ndarray, kwargs: dict[str, float],
                          message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        EraseSelector(ids, embeddings, **kwargs)  # type: ignore[arg-type]


def test_repr_and_stats() -> None:
    ids, x = _pool(4, 30, 4, 2, 0.3)
    selector = EraseSelector(ids, x, k=4, epsilon=DEFAULT_EPSILON, seed=9)
    selector.delete(ids[5])
    assert repr(selector).startswith("EraseSelector(n=29, k=4, epsilon=")
    assert selector.stats.deletions == 1


@pytest.mark.slow
def test_tofu_deletions_rarely_recompute() -> None:
    from benchmarks.data_dir import resolve_data_dir
    from benchmarks.erase_deletion import embed_texts, load_tofu_questions

    ids, questions = load_tofu_questions(resolve_data_dir())
    x = embed_texts(questions)
    selector = EraseSelector(ids, x, k=16, seed=0)
    alive = np.ones(len(ids), dtype=bool)
    for step, index in enumerate(np.random.default_rng(0).permutation(len(ids))[:300], 1):
        selector.delete(ids[index])
        alive[index] = False
        if step % 100 == 0:
            keep = np.flatnonzero(alive)
            assert _state(selector) == _state(EraseSelector([ids[i] for i in keep], x[keep], k=16))
    share = selector.stats.recomputes / selector.stats.deletions
    print(f"TOFU retain90: {selector!r}, recompute share {share:.1%}")
    assert share < 0.3  # measured 17.7 % (53 of 300) at epsilon 0.5
