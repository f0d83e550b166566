"""Plain data types shared by the benchmark loaders, plus checked file readers.

A loader turns one benchmark's files into a ``Benchmark``: forget targets (what a policy must
forget) and four probe lists used only for scoring. ``DataFiles`` reads JSON / JSON Lines files,
records each file's sha256 for provenance and raises ``DatasetError`` naming the file (and the
line, for JSON Lines) on anything malformed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from benchmarks.data_dir import resolve_data_dir, sha256_file
from benchmarks.errors import DatasetError

__all__ = ["Benchmark", "DataFiles", "ForgetTarget", "Probe", "ProbeKind", "Row", "sample"]

ProbeKind = Literal["forget", "neighbour", "retain", "utility"]
_KINDS: tuple[ProbeKind, ...] = ("forget", "neighbour", "retain", "utility")
T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """One scored question. MCQ probes have ``choices`` and ``correct_index``; ``answer`` is
    then the text of the correct choice."""

    id: str
    question: str
    answer: str
    kind: ProbeKind
    target_id: str | None = None
    subject: str | None = None
    level: str | None = None
    type: str | None = None
    choices: tuple[str, ...] = ()
    correct_index: int | None = None
    paraphrased_question: str | None = None
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"probe {self.id}: kind must be one of {_KINDS}, not {self.kind!r}")
        if (self.correct_index is None) != (not self.choices):
            raise ValueError(f"probe {self.id}: choices and correct_index go together")
        if self.correct_index is not None and not 0 <= self.correct_index < len(self.choices):
            raise ValueError(f"probe {self.id}: correct_index {self.correct_index} out of range")

    @property
    def is_mcq(self) -> bool:
        """True for multiple-choice probes."""
        return bool(self.choices)


@dataclass(frozen=True)
class ForgetTarget:
    """Something to forget: its names, description, documents and example QA pairs."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    documents: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.questions) != len(self.answers):
            raise ValueError(f"target {self.id}: {len(self.questions)} questions, "
                             f"{len(self.answers)} answers")

    def __repr__(self) -> str:
        return (f"ForgetTarget(id={self.id!r}, name={self.name!r}, aliases={self.aliases!r}, "
                f"documents={len(self.documents)}, questions={len(self.questions)})")


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark. ``files`` maps each file read (relative to the data directory) to its
    sha256; ``params`` records the loader arguments (split, targets, limit, seed)."""

    name: str
    targets: tuple[ForgetTarget, ...]
    forget_probes: tuple[Probe, ...] = ()
    neighbour_probes: tuple[Probe, ...] = ()
    retain_probes: tuple[Probe, ...] = ()
    utility_probes: tuple[Probe, ...] = ()
    retain_documents: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)

    def probes(self, kind: ProbeKind) -> tuple[Probe, ...]:
        """The probe list of one kind."""
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
        probes: tuple[Probe, ...] = getattr(self, f"{kind}_probes")
        return probes

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={len(self.probes(kind))}" for kind in _KINDS)
        return (f"Benchmark({self.name!r}, targets={len(self.targets)}, {counts}, "
                f"retain_documents={len(self.retain_documents)})")


@dataclass(frozen=True)
class Row:
    """One record of a data file with typed, checked field access."""

    where: str
    data: Mapping[str, object]

    def _get(self, key: str) -> object:
        if key not in self.data:
            raise DatasetError(f"{self.where}: missing field {key!r}")
        return self.data[key]

    def text(self, key: str) -> str:
        """A string field."""
        value = self._get(key)
        if not isinstance(value, str):
            raise DatasetError(f"{self.where}: field {key!r} must be a string, "
                               f"not {type(value).__name__}")
        return value

    def integer(self, key: str) -> int:
        """An integer field (booleans rejected)."""
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise DatasetError(f"{self.where}: field {key!r} must be an integer, "
                               f"not {type(value).__name__}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """A list-of-strings field."""
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DatasetError(f"{self.where}: field {key!r} must be a list of strings")
        return tuple(value)


class DataFiles:
    """Reads files below ``<data_dir>/<benchmark>`` and records their sha256."""

    def __init__(self, data_dir: str | os.PathLike[str] | None, benchmark: str) -> None:
        self.root = resolve_data_dir(data_dir)
        self.benchmark = benchmark
        self.hashes: dict[str, str] = {}

    def _open(self, name: str) -> Path:
        rel = f"{self.benchmark}/{name}"
        path = self.root / rel
        if not path.is_file():
            raise DatasetError(f"missing data file {path}")
        self.hashes[rel] = sha256_file(path)
        return path

    def jsonl(self, name: str) -> list[Row]:
        """Rows of a JSON Lines file (``.gz`` allowed); blank lines are skipped."""
        path = self._open(name)
        opener = gzip.open if path.suffix == ".gz" else open
        rows = []
        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        rows.append(_parse_line(line, f"{path} line {number}"))
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise DatasetError(f"cannot read {path}: {exc}") from exc
        return rows

    def json_array(self, name: str) -> list[Row]:
        """Rows of a file holding one JSON array of objects."""
        path = self._open(name)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: not a readable JSON file ({exc})") from exc
        if not isinstance(value, list):
            raise DatasetError(f"{path}: expected a JSON array, found {type(value).__name__}")
        rows = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise DatasetError(f"{path} item {index}: expected an object")
            rows.append(Row(f"{path} item {index}", item))
        return rows


def _parse_line(line: str, where: str) -> Row:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: invalid JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return Row(where, value)


def sample(items: Sequence[T], limit: int | None, *, seed: int, label: str) -> tuple[T, ...]:
    """At most ``limit`` items, drawn deterministically from ``seed`` and ``label``; the
    original order is kept. ``None`` keeps everything."""
    if limit is None or limit >= len(items):
        return tuple(items)
    if limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    chosen = random.Random(f"{seed}/{label}").sample(range(len(items)), limit)
    return tuple(items[i] for i in sorted(chosen))
