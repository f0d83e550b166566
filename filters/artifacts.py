"""A policy's heavy guard inputs, built lazily and cached on disk, and the guards built on them.

:class:`PolicyArtifacts` holds what guard builders use: the alias table, the FAISS forget index
(items + embeddings) and each input classifier (+ its calibration). The index and classifiers
are stored under ``cache_dir`` keyed by a sha256 of their inputs (targets with their document
texts, retain examples, generic negatives, embedder id, library and code versions), so an
unchanged policy loads in well under a second and a changed one rebuilds only what its change
touches. :func:`build_guards` builds a policy's guards through :data:`filters.GUARD_BUILDERS`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from filters.alias_matcher import AliasTable
from filters.embedder import Embedder
from filters.forget_index import ForgetIndex, collect_items
from filters.input_classifier import ClassifierModel, train_classifier
from filters.negatives import Calibration, negatives_sha256
from filters.scope import ScopeFeaturizer, ScopeHead, train_scope
from proxy.core.config import (
    DEFAULT_TARGET_FNR, ForgetTargetConfig, QAExample, resolve_document,
)

CODE_VERSION = "filters/1"


def _sha256(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[unlearn-proxy] {message}", file=sys.stderr, flush=True)


def _replace_dir(final: Path, write: Any) -> None:
    """Let ``write(tmp_dir)`` fill a temporary directory, then rename it to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write(tmp)
        if final.exists():  # built meanwhile by another process: keep theirs
            return
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class PolicyArtifacts:
    """The lazily built, disk-cached inputs of a policy's guards (what guard builders use)."""

    def __init__(
        self,
        targets: Sequence[ForgetTargetConfig],
        retain: Sequence[QAExample],
        embedder: Embedder,
        *,
        base_dir: Path,
        cache_dir: Path,
        progress: bool = True,
    ) -> None:
        self.targets = list(targets)
        self.retain = list(retain)
        self.embedder = embedder
        self.base_dir = base_dir
        self.cache_dir = Path(cache_dir) / "filters"
        self.progress = progress
        self.cache_hits: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._classifiers: dict[tuple[bool, float], tuple[ClassifierModel, Calibration]] = {}
        self._scopes: dict[tuple[float, bool], tuple[ScopeHead, Calibration]] = {}

    @cached_property
    def index_key(self) -> str:
        """sha256 of everything the forget index depends on."""
        targets = []
        for target in self.targets:
            data = target.model_dump(exclude={"documents"})
            docs = [resolve_document(d, self.base_dir) for d in target.documents]
            data["documents"] = [hashlib.sha256(d.encode()).hexdigest() for d in docs]
            targets.append(data)
        return _sha256(
            {"code": CODE_VERSION, "embedder": self.embedder.model_id, "targets": targets}
        )

    @cached_property
    def aliases(self) -> AliasTable:
        return AliasTable.from_targets(self.targets)

    @cached_property
    def retain_vectors(self) -> np.ndarray:
        """The retain examples' questions embedded (rows unit length; none: shape (0, 0))."""
        questions = [qa.question for qa in self.retain]
        return self.embedder.embed(questions) if questions else np.zeros((0, 0), "float32")

    @cached_property
    def retain_text_vectors(self) -> np.ndarray:
        """The retain examples' questions and answers embedded, the questions first."""
        answers = [qa.answer for qa in self.retain if qa.answer and qa.answer.strip()]
        if not answers:
            return self.retain_vectors
        return np.r_[self.retain_vectors.reshape(-1, self.index.dim), self.embedder.embed(answers)]

    @cached_property
    def index(self) -> ForgetIndex:
        """The forget index, loaded from the cache or built (and cached)."""
        directory = self.cache_dir / f"index-{self.index_key[:24]}"
        if (directory / "vectors.npy").is_file():
            self.cache_hits["index"] = True
            return ForgetIndex.load(directory)
        self.cache_hits["index"] = False
        items = collect_items(self.targets, base_dir=self.base_dir)
        _log(self.progress, f"indexing {len(items)} forget items of {len(self.targets)} targets")
        index = ForgetIndex.build(items, self.embedder, progress=self.progress)
        _replace_dir(directory, index.save)
        return index

    def scope_featurizer(self, *, classifier: bool) -> ScopeFeaturizer:
        """What the scope check describes a text with: the index, the retain examples, the
        aliases and (``classifier``) the default input classifier."""
        if not classifier:
            return ScopeFeaturizer(self.index, self.retain_vectors, self.aliases)
        model, calibration = self.classifier(char_ngrams=True, target_fnr=DEFAULT_TARGET_FNR)
        return ScopeFeaturizer(self.index, self.retain_vectors, self.aliases, classifier=model,
                               out_of_fold=calibration.out_of_fold)

    def scope(
        self, *, target_fnr: float, classifier: bool
    ) -> tuple[ScopeHead, Calibration, ScopeFeaturizer]:
        """The scope head, its calibration and its featurizer, the head from the cache or
        trained (and cached)."""
        featurizer = self.scope_featurizer(classifier=classifier)
        with self._lock:
            wanted = (target_fnr, classifier)
            if wanted not in self._scopes:
                key = _sha256({"index": self.index_key, "negatives": negatives_sha256(),
                               "retain": [qa.model_dump() for qa in self.retain],
                               "target_fnr": target_fnr, "classifier": classifier,
                               "code": "scope/2"})
                self._scopes[wanted] = self._cached_pickle(
                    "scope", key, "training the scope check",
                    lambda: train_scope(featurizer, [qa.question for qa in self.retain],
                                        self.embedder, target_fnr=target_fnr))
            return (*self._scopes[wanted], featurizer)

    def classifier(
        self, *, char_ngrams: bool, target_fnr: float
    ) -> tuple[ClassifierModel, Calibration]:
        """The trained classifier and its calibration, from the cache or trained (and cached)."""
        with self._lock:
            wanted = (char_ngrams, target_fnr)
            if wanted not in self._classifiers:
                self._classifiers[wanted] = self._load_or_train(char_ngrams, target_fnr)
            return self._classifiers[wanted]

    def _load_or_train(
        self, char_ngrams: bool, target_fnr: float
    ) -> tuple[ClassifierModel, Calibration]:
        key = _sha256(
            {
                "index": self.index_key,
                "retain": [qa.model_dump() for qa in self.retain],
                "negatives": negatives_sha256(),
                "char_ngrams": char_ngrams,
                "target_fnr": target_fnr,
                "sklearn": sklearn.__version__,
                "code": "classifier/2",
            }
        )
        return self._cached_pickle(
            "classifier", key, f"training input classifier (char n-grams: {char_ngrams})",
            lambda: train_classifier(
                self.index, self.retain, self.embedder, char_ngrams=char_ngrams,
                target_fnr=target_fnr, progress=self.progress,
            ))  # fmt: skip

    def _cached_pickle(self, kind: str, key: str, doing: str, build: Any) -> Any:
        """``build()``'s result, loaded from ``cache_dir/{kind}-{key}.pkl`` or built (logging
        ``doing``) and stored there."""
        path = self.cache_dir / f"{kind}-{key[:24]}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        hit = f"{kind}-{key[:8]}"
        if path.is_file():
            self.cache_hits[hit] = True
            with path.open("rb") as file:
                return pickle.load(file)  # our own file
        self.cache_hits[hit] = False
        _log(self.progress, doing)
        result = build()
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            pickle.dump(result, file)
        os.replace(tmp, path)
        return result


def build_guards(methods: Sequence[Any], artifacts: PolicyArtifacts) -> list[tuple[Any, Any]]:
    """The guard of each of ``methods`` that :data:`filters.GUARD_BUILDERS` knows, paired with
    its config, in config order; the embedder is loaded now when there is a guard, so the first
    request does not pay for it."""
    from filters import GUARD_BUILDERS

    guards = [(cfg, GUARD_BUILDERS.get(cfg.type)(cfg, artifacts))
              for cfg in methods if cfg.type in GUARD_BUILDERS]
    if guards and hasattr(artifacts.embedder, "warm_up"):
        artifacts.embedder.warm_up()
    return guards
