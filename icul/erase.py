"""ERASE: choose in-context examples by quantized k-means, and delete examples exactly.

Muresanu et al. 2024, *Fast Exact Unlearning for In-Context Learning Data* (ERASE): one
representative per cluster of a k-means whose centroids are snapped to a randomly offset grid.
Ginart et al. 2019, *Making AI Forget You* (Q-k-means): then a deletion rarely moves any centroid
of the Lloyd trajectory; it is checked in O(steps x dim) from stored per-step cluster sums, and
only from the first step whose quantized centroid moves are the Lloyd steps re-run.

Exactness is arithmetic: embeddings become fixed-point integers (step 2**-24), centroids integer
grid codes, and sums, rounding and distance comparisons are exact (float64 BLAS only where every
partial sum is an integer below 2**53). Results depend on the *set* of (id, embedding) pairs only,
and an incremental deletion equals a fresh run bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from icul.errors import InvalidInputError, UnknownExampleError

DEFAULT_EPSILON = 0.5  # TOFU+MiniLM: 18 % (k=16) / 8 % (k=8) of deletions re-run Lloyd steps
_UNIT = float(1 << 24)  # fixed-point scale of the embedding coordinates
_NORM_TOLERANCE = 1e-3


@dataclass
class EraseStats:
    """Deletion counters: ``deletions`` done, ``recomputes`` of them that re-ran Lloyd steps
    (from the first step whose quantized centroid moved), ``rerun_steps`` in total."""

    deletions: int = 0
    recomputes: int = 0
    rerun_steps: int = 0


@dataclass
class _Trajectory:
    """A Lloyd run: ``codes[t]`` (k x d grid codes) gave ``labels[t]``, ``sums[t]``, ``counts[t]``
    and ``codes[t + 1]``; ``reps[j]`` is the slot of cluster j's representative (-1 if empty)."""

    codes: list[np.ndarray]
    labels: list[np.ndarray] = field(default_factory=list)
    sums: list[np.ndarray] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    final_labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    reps: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def _seeded_hash(seed: int, example_id: str) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{example_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _to_fixed_point(embeddings: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] < 1 or not np.all(np.isfinite(x)):
        raise InvalidInputError(f"embeddings must be finite, shape ({n}, dim >= 1); got {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms > 1 + _NORM_TOLERANCE):
        raise InvalidInputError(
            f"embeddings must be L2-normalised (row norm <= 1); max norm is {norms.max():.4g}"
        )
    return np.rint(x * _UNIT).astype(np.int64)


def _check_exact_range(n: int, dim: int, e: int) -> None:
    """Raise unless every intermediate stays exact (float64 below 2**53, int64 below 2**62)."""
    root = math.sqrt(dim)
    x = _UNIT * (1 + _NORM_TOLERANCE) + root  # bound on a row's norm, in fixed-point units
    code = x / e + 1.5 * root + 1  # bound on a grid code's norm
    centre = x + e * root  # bound on a quantized centroid's norm
    float_max = max(x * code, n * x)
    int_max = max(e * code * code + 2 * e * root * code + 2 * x * code, x * x + 2 * x * centre)
    if float_max >= 2.0**53 or max(int_max, n * (2 * x + 3 * e)) >= 2.0**62:
        raise InvalidInputError(
            f"epsilon={e / _UNIT:g} with dim={dim}, n={n} is outside the exact-arithmetic range"
        )


def _quantize(sums: np.ndarray, counts: np.ndarray, offset: np.ndarray, e: int) -> np.ndarray:
    """Grid codes ``round((sums / counts - offset) / e)`` (halves up), in exact integers."""
    c = counts[:, None]
    return (2 * (sums - c * offset) + c * e) // (2 * c * e)


def _assign(x_float: np.ndarray, codes: np.ndarray, offset: np.ndarray, e: int) -> np.ndarray:
    """Nearest grid centroid ``o + e m`` per row (lowest index on ties), using
    ``|x - o - e m|^2 / e = |x - o|^2 / e + e |m|^2 + 2 o.m - 2 x.m`` (first term: constant)."""
    dots = np.rint(x_float @ codes.T.astype(np.float64)).astype(np.int64)
    bias = e * np.einsum("kd,kd->k", codes, codes) + 2 * (codes @ offset)
    return np.argmin(bias[None, :] - 2 * dots, axis=1)


def _cluster_sums(x_float: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    one_hot = np.zeros((k, labels.size))
    one_hot[labels, np.arange(labels.size)] = 1.0
    return np.rint(one_hot @ x_float).astype(np.int64), np.bincount(labels, minlength=k)


def _nearest_member(
    x_int: np.ndarray, members: np.ndarray, code: np.ndarray, offset: np.ndarray, e: int
) -> int:
    """Slot of the member nearest the grid centroid (lowest slot, i.e. id, on ties); -1 if none."""
    if members.size == 0:
        return -1
    rows = x_int[members]
    score = np.einsum("nd,nd->n", rows, rows) - 2 * (rows @ (offset + e * code))
    return int(members[np.argmin(score)])


def _lloyd(x_int: np.ndarray, traj: _Trajectory, offset: np.ndarray, e: int, max_iter: int) -> None:
    """Run Lloyd steps on ``traj`` (a prefix, possibly just the initial codes) until the
    quantized centroids stop moving or ``max_iter`` steps exist; then set labels and reps."""
    x_float = x_int.astype(np.float64)
    k = traj.codes[0].shape[0]
    while len(traj.labels) < max_iter and not (
        len(traj.codes) > 1 and np.array_equal(traj.codes[-1], traj.codes[-2])
    ):
        labels = _assign(x_float, traj.codes[-1], offset, e)
        sums, counts = _cluster_sums(x_float, labels, k)
        moved = _quantize(sums, np.maximum(counts, 1), offset, e)
        traj.codes.append(np.where(counts[:, None] > 0, moved, traj.codes[-1]))  # empty: stay
        traj.labels.append(labels)
        traj.sums.append(sums)
        traj.counts.append(counts)
    converged = np.array_equal(traj.codes[-1], traj.codes[-2])
    final = traj.labels[-1] if converged else _assign(x_float, traj.codes[-1], offset, e)
    reps = [_nearest_member(x_int, np.flatnonzero(final == j), traj.codes[-1][j], offset, e)
            for j in range(k)]
    traj.final_labels, traj.reps = final, np.array(reps, dtype=np.int64)


class EraseSelector:
    """Quantized k-means selection of in-context examples with exact, mostly cheap deletion.

    ``ids`` are unique strings and ``embeddings`` an ``(n, dim)`` array of L2-normalised rows.
    Initial centroids are the ``k`` examples with the smallest ``blake2b(seed, id)``, so deleting
    any other example leaves the initialisation unchanged; the grid offset is drawn from ``seed``.
    Lloyd runs ``max_iter`` steps or until the quantized centroids stop moving; an empty cluster
    keeps its centroid. With ``n <= k`` every example is selected.

    Raises:
        InvalidInputError: bad parameters, duplicate ids, or embeddings of the wrong shape/norm.
    """

    def __init__(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        *,
        k: int,
        epsilon: float = DEFAULT_EPSILON,
        seed: int = 0,
        max_iter: int = 20,
    ) -> None:
        for name, value, low in (("k", k, 1), ("seed", seed, 0), ("max_iter", max_iter, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}; got {value!r}")
        if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 2**-25):
            raise InvalidInputError(f"epsilon must be a finite number >= 2**-25; got {epsilon!r}")
        id_list = list(ids)
        if not all(isinstance(i, str) for i in id_list) or len(set(id_list)) != len(id_list):
            raise InvalidInputError("ids must be unique strings")
        self.k, self.epsilon, self.seed, self.max_iter = k, float(epsilon), seed, max_iter
        self._e = round(epsilon * _UNIT)
        x_int = _to_fixed_point(embeddings, len(id_list))
        _check_exact_range(len(id_list), x_int.shape[1], self._e)
        self._offset = np.random.default_rng(seed).integers(0, self._e, size=x_int.shape[1])
        order = sorted(range(len(id_list)), key=id_list.__getitem__)
        self._ids = [id_list[i] for i in order]
        self._x_int = x_int[order]
        self._hashes = np.array([_seeded_hash(seed, i) for i in self._ids], dtype=np.uint64)
        self._alive = np.ones(len(id_list), dtype=bool)
        self._stats = EraseStats()
        self._refit()

    def _compact(self) -> np.ndarray:
        """Drop deleted slots (kept in id order: ties resolve by id); return the kept old slots."""
        keep = np.flatnonzero(self._alive)
        self._ids = [self._ids[s] for s in keep]
        self._x_int, self._hashes = self._x_int[keep], self._hashes[keep]
        self._alive = np.ones(keep.size, dtype=bool)
        self._slot = {example_id: slot for slot, example_id in enumerate(self._ids)}
        self._rank = np.argsort(self._hashes, kind="stable")
        self._init = frozenset(self._rank[: self.k].tolist())
        return keep

    def _refit(self) -> int:
        """Cluster the live examples from scratch; return the Lloyd steps run."""
        self._compact()
        self._traj: _Trajectory | None = None
        if len(self._ids) <= self.k:
            return 0
        init = self._x_int[self._rank[: self.k]]
        start = _quantize(init, np.ones(self.k, dtype=np.int64), self._offset, self._e)
        self._traj = _Trajectory([start])
        _lloyd(self._x_int, self._traj, self._offset, self._e, self.max_iter)
        return len(self._traj.labels)

    def _subtract(self, traj: _Trajectory, slot: int) -> tuple[int, int, np.ndarray] | None:
        """Take the point out of each step's cluster sums up to the first step whose quantized
        centroid moves; return (step, cluster, new code) there, or None if none moves."""
        x = self._x_int[slot]
        for step, labels in enumerate(traj.labels):
            c = int(labels[slot])
            traj.sums[step][c] -= x
            traj.counts[step][c] -= 1
            count = traj.counts[step][c : c + 1]
            code = traj.codes[step][c]
            if count[0] > 0:
                code = _quantize(traj.sums[step][c][None], count, self._offset, self._e)[0]
            if not np.array_equal(code, traj.codes[step + 1][c]):
                return step, c, code
        return None

    def _resume(self, traj: _Trajectory, step: int, cluster: int, code: np.ndarray) -> int:
        """Keep steps ``<= step`` (already corrected), re-run Lloyd after; return steps run."""
        keep = self._compact()
        codes = traj.codes[: step + 2]
        codes[-1] = codes[-1].copy()
        codes[-1][cluster] = code
        labels = [labels[keep] for labels in traj.labels[: step + 1]]
        self._traj = _Trajectory(codes, labels, traj.sums[: step + 1], traj.counts[: step + 1])
        _lloyd(self._x_int, self._traj, self._offset, self._e, self.max_iter)
        return len(self._traj.labels) - step - 1

    def _replace_representative(self, traj: _Trajectory, slot: int) -> None:
        final = int(traj.final_labels[slot])
        if traj.reps[final] == slot:
            members = np.flatnonzero((traj.final_labels == final) & self._alive)
            traj.reps[final] = _nearest_member(
                self._x_int, members, traj.codes[-1][final], self._offset, self._e
            )

    def delete(self, example_id: str) -> bool:
        """Remove ``example_id`` exactly; return True when Lloyd steps had to be re-run.

        Raises:
            UnknownExampleError: the id is not in the pool (or was already deleted).
        """
        slot = self._slot.pop(example_id, None)
        if slot is None:
            raise UnknownExampleError(f"unknown example id {example_id!r} (not in the pool)")
        self._alive[slot] = False
        self._stats.deletions += 1
        traj = self._traj
        if traj is None:  # n <= k already: every remaining example stays selected
            return False
        if slot in self._init or len(self._slot) <= self.k:
            steps = self._refit()
        elif (moved := self._subtract(traj, slot)) is not None:
            steps = self._resume(traj, *moved)
        else:
            self._replace_representative(traj, slot)
            return False
        self._stats.recomputes += 1
        self._stats.rerun_steps += steps
        return True

    def selected(self) -> list[str]:
        """Representative ids, one per non-empty cluster, in cluster order (all ids if n <= k)."""
        if self._traj is None:
            return [self._ids[s] for s in self._rank if self._alive[s]]
        return [self._ids[s] for s in self._traj.reps if s >= 0]

    def assignment(self) -> dict[str, int]:
        """Cluster index of every example (its seeded-hash rank when n <= k)."""
        if self._traj is None:
            alive = [s for s in self._rank if self._alive[s]]
            return {self._ids[s]: j for j, s in enumerate(alive)}
        labels = self._traj.final_labels
        return {self._ids[s]: int(labels[s]) for s in np.flatnonzero(self._alive)}

    @property
    def n_iter(self) -> int:
        """Lloyd iterations of the current clustering (0 when n <= k)."""
        return 0 if self._traj is None else len(self._traj.labels)

    @property
    def stats(self) -> EraseStats:
        """A copy of the deletion counters."""
        return EraseStats(**vars(self._stats))

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, example_id: object) -> bool:
        return example_id in self._slot

    def __repr__(self) -> str:
        done = self._stats
        return (f"EraseSelector(n={len(self)}, k={self.k}, epsilon={self.epsilon:g}, "
                f"seed={self.seed}, deletions={done.deletions}, recomputes={done.recomputes})")
