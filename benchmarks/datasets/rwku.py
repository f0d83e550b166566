"""RWKU: Real-World Knowledge Unlearning (Jin et al., 2024, arXiv:2406.10890).

Targets are famous people. Forget probes: level 1 fill-in-the-blank (FB), level 2 QA, level 3
adversarial (``type`` names the attack). Neighbour probes (levels 1-2) ask about related
entities and must still be answered. Target documents are the ``mia_forget`` passages, retain
documents the ``mia_retain`` passages (about other people), utility probes RWKU's MMLU sample
(present for targets 1-100 only). Probes are for scoring only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from benchmarks.datasets.base import (
    Benchmark, DataFiles, ForgetTarget, Probe, ProbeKind, Row, sample,
)
from benchmarks.errors import DatasetError

__all__ = [
    "ANSWER_PREFIX", "MAX_NEW_TOKENS", "RwkuPrompt", "fill_in_blank_prompt", "load_rwku",
    "probe_prompt", "question_answer_prompt",
]

ANSWER_PREFIX = "Answer:"
MAX_NEW_TOKENS = 30
_FB = "Please complete the blank in the following question.\nQuestion: {query}\n"
_QA = "Please briefly answer the following question.\nQuestion: {query}\n"
_ICL = "Please briefly answer the following question.\n{query}\n"
_MMLU_FILE = "utility/utility_general_mmlu.jsonl.gz"


class RwkuPrompt(NamedTuple):
    """RWKU's prompt: ``user`` is chat-templated, then ``assistant_prefix`` is appended."""

    user: str
    assistant_prefix: str


def fill_in_blank_prompt(query: str) -> RwkuPrompt:
    """Level-1 (FB) prompt, as in RWKU's ``eval_forget.py``."""
    return RwkuPrompt(_FB.format(query=query), ANSWER_PREFIX)


def question_answer_prompt(query: str) -> RwkuPrompt:
    """Level-2 (QA) prompt, also used for most level-3 attacks."""
    return RwkuPrompt(_QA.format(query=query), ANSWER_PREFIX)


def probe_prompt(probe: Probe) -> RwkuPrompt:
    """The prompt RWKU uses for a probe, by level and (level 3) attack type."""
    if probe.level == "1":
        return fill_in_blank_prompt(probe.question)
    if probe.level == "3" and probe.type == "affirmative suffix":
        return RwkuPrompt(_QA.format(query=probe.question).rstrip("\n"), "")
    if probe.level == "3" and probe.type == "incontext learning":
        return RwkuPrompt(_ICL.format(query=probe.question), ANSWER_PREFIX)
    return question_answer_prompt(probe.question)


def _select(rows: list[Row], target_ids: Sequence[int] | None, n_targets: int) -> list[Row]:
    known = {row.integer("target_id"): row for row in rows}
    if target_ids is None:
        if n_targets < 1:
            raise DatasetError(f"n_targets must be >= 1, got {n_targets}")
        return [known[i] for i in sorted(known)[:n_targets]]
    missing = [i for i in target_ids if i not in known]
    if missing:
        raise DatasetError(f"RWKU has no target id(s) {missing} (known: {min(known)}-{max(known)})")
    return [known[i] for i in dict.fromkeys(target_ids)]


def _check_levels(levels: Iterable[int], allowed: set[int], what: str) -> list[int]:
    chosen = sorted(set(levels))
    if not set(chosen) <= allowed:
        raise DatasetError(f"{what} levels must be within {sorted(allowed)}, got {chosen}")
    return chosen


def _probes(rows: list[Row], name: str, ids: dict[int, str], kind: ProbeKind) -> list[Probe]:
    probes = []
    for index, row in enumerate(rows):
        target = ids.get(row.integer("target_id"))
        if target is None:
            continue
        subject = row.text("neighbor") if kind == "neighbour" else row.text("subject")
        probes.append(Probe(
            id=f"rwku/{name}/{index}", question=row.text("query"), answer=row.text("answer"),
            kind=kind, target_id=target, subject=subject,
            level=row.text("level"), type=row.text("type")))
    return probes


def _mmlu_probes(rows: list[Row], ids: dict[int, str]) -> list[Probe]:
    probes = []
    for index, row in enumerate(rows):
        target = ids.get(row.integer("target_id"))
        if target is None:
            continue
        choices, answer = row.texts("choices"), row.integer("answer")
        if not 0 <= answer < len(choices):
            raise DatasetError(f"{row.where}: answer {answer} is not an index into choices")
        probes.append(Probe(
            id=f"rwku/mmlu/{index}", question=row.text("question"), answer=choices[answer],
            kind="utility", target_id=target, type=row.text("task"), choices=choices,
            correct_index=answer))
    return probes


def _passages(rows: list[Row], ids: dict[int, str]) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {target: [] for target in ids.values()}
    for row in rows:
        target = ids.get(row.integer("target_id"))
        if target is not None:
            texts[target].append(row.text("text"))
    return texts


def load_rwku(data_dir: str | os.PathLike[str] | None = None, *,
              target_ids: Sequence[int] | None = None, n_targets: int = 10,
              forget_levels: Iterable[int] = (1, 2, 3), neighbour_levels: Iterable[int] = (1, 2),
              limit: int | None = None, seed: int = 0) -> Benchmark:
    """Load RWKU from ``<data_dir>/rwku`` for ``target_ids`` (1-200; default the first
    ``n_targets``).

    ``limit`` caps each probe list (sampled with ``seed``); documents are never sampled. Retain
    documents are de-duplicated and exclude passages that are forget documents of a chosen
    target. Raises ``DatasetError`` for unknown ids/levels or a missing/malformed file.
    """
    forget_levels = _check_levels(forget_levels, {1, 2, 3}, "forget")
    neighbour_levels = _check_levels(neighbour_levels, {1, 2}, "neighbour")
    files = DataFiles(data_dir, "rwku")
    chosen = _select(files.jsonl("forget_target.jsonl"), target_ids, n_targets)
    ids = {row.integer("target_id"): row.text("target_dir") for row in chosen}
    forget = [p for level in forget_levels for p in _probes(
        files.jsonl(f"forget_level{level}.jsonl"), f"forget_level{level}", ids, "forget")]
    neighbours = [p for level in neighbour_levels for p in _probes(
        files.jsonl(f"neighbor_level{level}.jsonl"), f"neighbor_level{level}", ids, "neighbour")]
    documents = _passages(files.jsonl("mia_forget.jsonl.gz"), ids)
    forget_texts = {text for texts in documents.values() for text in texts}
    retain = _passages(files.jsonl("mia_retain.jsonl.gz"), ids)
    retain_documents = dict.fromkeys(text for texts in retain.values() for text in texts
                                     if text not in forget_texts)
    targets = tuple(ForgetTarget(id=ids[row.integer("target_id")], name=row.text("target"),
                                 description=row.text("intro"),
                                 documents=tuple(documents[ids[row.integer("target_id")]]))
                    for row in chosen)
    return Benchmark(
        name="rwku", targets=targets,
        forget_probes=sample(forget, limit, seed=seed, label="forget"),
        neighbour_probes=sample(neighbours, limit, seed=seed, label="neighbour"),
        utility_probes=sample(_mmlu_probes(files.jsonl(_MMLU_FILE), ids), limit, seed=seed,
                              label="utility"),
        retain_documents=tuple(retain_documents), files=dict(files.hashes),
        params={"target_ids": sorted(ids), "forget_levels": forget_levels,
                "neighbour_levels": neighbour_levels, "limit": limit, "seed": seed})
