"""A policy compiled into run-time guards, with its heavy artefacts cached on disk.

:func:`compile_policy` turns a :class:`~proxy.core.config.PolicyConfig` (plus forget targets added
or removed at run time) into a :class:`CompiledPolicy`: the guards of its ``methods`` built
through :data:`filters.GUARD_BUILDERS`, in config order. The FAISS index (items + embeddings)
and each classifier (+ its calibration) are stored under ``cache_dir`` keyed by a sha256 of
their inputs (targets with their document texts, retain examples, generic negatives, embedder
id, library and code versions), so an unchanged policy loads in well under a second and a
changed one rebuilds only what its change touches.
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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import sklearn

from filters.alias_matcher import AliasTable
from filters.base import InputGuard, Message, OutputGuard, Verdict
from filters.embedder import Embedder, build_embedder
from filters.forget_index import ForgetIndex, collect_items
from filters.input_classifier import ClassifierModel, train_classifier
from filters.negatives import Calibration, CalibrationReport, negatives_sha256
from proxy.core.config import ForgetTargetConfig, PolicyConfig, QAExample, resolve_document
from proxy.core.errors import ConfigError

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
            }
        )
        path = self.cache_dir / f"classifier-{key[:24]}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            self.cache_hits[f"classifier-{key[:8]}"] = True
            with path.open("rb") as file:
                loaded: tuple[ClassifierModel, Calibration] = pickle.load(file)  # our own file
            return loaded
        self.cache_hits[f"classifier-{key[:8]}"] = False
        _log(self.progress, f"training input classifier (char n-grams: {char_ngrams})")
        result = train_classifier(
            self.index, self.retain, self.embedder, char_ngrams=char_ngrams,
            target_fnr=target_fnr, progress=self.progress,
        )  # fmt: skip
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            pickle.dump(result, file)
        os.replace(tmp, path)
        return result


def _effective_targets(
    policy: PolicyConfig, extra: Iterable[ForgetTargetConfig], removed: Iterable[str]
) -> list[ForgetTargetConfig]:
    removed_ids = set(removed)
    targets = [t for t in [*policy.forget, *extra] if t.id not in removed_ids]
    ids = [t.id for t in targets]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"duplicate forget target ids: {', '.join(dupes)}")
    if not targets:
        raise ConfigError("a policy needs at least one forget target")
    return targets


@dataclass
class CompiledPolicy:
    """Everything a policy needs at run time. ``guards`` follow ``policy.methods`` order."""

    name: str
    policy: PolicyConfig
    targets: list[ForgetTargetConfig]
    key: str
    methods: list[Any]
    guards: list[tuple[Any, Any]]
    artifacts: PolicyArtifacts
    compile_s: float = 0.0
    cache_hits: dict[str, bool] = field(default_factory=dict)

    @property
    def input_guards(self) -> list[InputGuard]:
        """Input guards, cheapest first."""
        guards = [g for _, g in self.guards if isinstance(g, InputGuard)]
        return sorted(guards, key=lambda g: getattr(g, "cost_rank", 0))

    @property
    def output_guards(self) -> list[OutputGuard]:
        return [g for _, g in self.guards if isinstance(g, OutputGuard)]

    @property
    def hold_back_chars(self) -> int:
        """What a stream must withhold for every output guard."""
        return max((g.hold_back_chars for g in self.output_guards), default=0)

    @property
    def calibration(self) -> dict[str, CalibrationReport]:
        """Calibration reports of the classifiers, keyed ``methods[i]``."""
        where = {id(cfg): i for i, cfg in enumerate(self.methods)}
        return {
            f"methods[{where[id(cfg)]}]": guard.report
            for cfg, guard in self.guards
            if isinstance(getattr(guard, "report", None), CalibrationReport)
        }

    def check_input(self, messages: Sequence[Message]) -> list[Verdict]:
        """Run the input guards cheapest first; stop after the first block. Thread-safe."""
        verdicts = []
        for guard in self.input_guards:
            verdict = guard.check_input(messages)
            verdicts.append(verdict)
            if verdict.is_block:
                break
        return verdicts

    def describe(self) -> list[str]:
        """Lines for ``unlearn-proxy check-config``: guards, cache use and calibration."""
        lines = [
            f"guards (cheapest first): {', '.join(repr(g) for g in self.input_guards) or '(none)'}"
        ]
        if self.output_guards:
            lines.append(f"output guards: {', '.join(map(repr, self.output_guards))}")
        cached = ", ".join(f"{k}={'hit' if v else 'built'}" for k, v in self.cache_hits.items())
        lines.append(f"compiled in {self.compile_s:.1f}s ({cached or 'nothing to build'})")
        lines += [
            f"{where} input_classifier: {r.summary()}" for where, r in self.calibration.items()
        ]
        return lines

    def __repr__(self) -> str:
        kinds = [cfg.type for cfg, _ in self.guards]
        return f"CompiledPolicy({self.name!r}, targets={len(self.targets)}, guards={kinds})"


def compile_policy(
    name: str,
    policy: PolicyConfig,
    *,
    base_dir: Path,
    cache_dir: Path,
    extra_targets: Sequence[ForgetTargetConfig] = (),
    removed_target_ids: Iterable[str] = (),
    progress: bool = True,
) -> CompiledPolicy:
    """Build (or load from ``cache_dir``) the guards of ``policy``.

    Raises:
        ConfigError: duplicate or no forget targets, or an unusable embedder.
    """
    from filters import GUARD_BUILDERS

    started = time.perf_counter()
    removed_target_ids = sorted(set(removed_target_ids))
    targets = _effective_targets(policy, extra_targets, removed_target_ids)
    embedder = build_embedder(policy.embedder)
    artifacts = PolicyArtifacts(
        targets, policy.retain, embedder, base_dir=base_dir, cache_dir=cache_dir, progress=progress
    )
    guards = [
        (cfg, GUARD_BUILDERS.get(cfg.type)(cfg, artifacts))
        for cfg in policy.methods
        if cfg.type in GUARD_BUILDERS
    ]
    if guards and hasattr(embedder, "warm_up"):
        embedder.warm_up()  # the first request should not pay for loading the model
    key = _sha256(
        {
            "index": artifacts.index_key,
            "policy": policy.model_dump(),
            "extra": [t.model_dump() for t in extra_targets],
            "removed": removed_target_ids,
        }
    )
    elapsed = time.perf_counter() - started
    _log(progress, f"policy {name!r} compiled in {elapsed:.1f}s (cache: {artifacts.cache_hits})")
    return CompiledPolicy(
        name,
        policy,
        targets,
        key,
        list(policy.methods),
        guards,
        artifacts,
        compile_s=elapsed,
        cache_hits=dict(artifacts.cache_hits),
    )
