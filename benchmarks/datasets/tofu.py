"""TOFU: Task of Fictitious Unlearning (Maini et al., 2024, arXiv:2401.06121).

Forget targets are the fictitious authors of the forget split (20 consecutive QA pairs each).
Forget probes carry TOFU's paraphrased question/answer and five perturbed answers; retain probes
are the complementary retain split (perturbed fields only where ``retain_perturbed.json`` has
the QA pair: its first 400 rows); neighbour probes are ``real_authors`` + ``world_facts``
with their four options. With ``forget_questions="paraphrased"`` each forget probe asks TOFU's
paraphrased question and expects its paraphrased answer: a policy given the forget QA pairs
must then recognise questions it was never shown word for word.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from benchmarks.datasets.base import Benchmark, DataFiles, ForgetTarget, Probe, Row, sample
from benchmarks.errors import DatasetError

__all__ = ["QA_PER_AUTHOR", "SPLITS", "author_name", "load_tofu"]

SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
ForgetQuestions = Literal["original", "paraphrased"]
QA_PER_AUTHOR = 20
_MIN_NAME_SHARE = 0.3
_PARTICLES = frozenset("al bin da de del den der di du el ibn la le van von".split())
_SENTENCE_WORDS = frozenset(
    "A An And Are As At Being But By Can Could Did Do Does Dr For From Given Has Have Her His How "
    "In Is It Its Mr Mrs Ms Of On One Some That The Their These This Those Was Were What When "
    "Where Which While Who Why With Would Yes".split()
)
_TRAILING = re.compile(r"(?:['’]s)?[\"'”’),.;:!?]*$")


def _is_name_word(word: str) -> bool:
    parts = re.split(r"[-'’]", word)
    return word[:1].isupper() and all(p.isalpha() for p in parts)


def _name_runs(text: str) -> set[str]:
    """Maximal runs of 2-4 capitalised words (inner particles such as 'van' allowed)."""
    runs: list[list[str]] = [[]]
    for raw in text.split():
        word = raw.lstrip("\"“‘'([")
        core = _TRAILING.sub("", word)
        if word != raw:  # an opening quote or bracket starts a new run
            runs.append([])
        if core and (_is_name_word(core) or (runs[-1] and core in _PARTICLES)):
            runs[-1].append(core)
        else:
            runs.append([])
        if core != word:  # closing punctuation or a possessive ends the run
            runs.append([])
    return {" ".join(run) for run in map(_trim, runs) if 2 <= len(run) <= 4}


def _trim(run: list[str]) -> list[str]:
    """Drop sentence-initial function words and dangling particles from a run."""
    start, end = 0, len(run)
    while start < end and (run[start] in _SENTENCE_WORDS or run[start] in _PARTICLES):
        start += 1
    while end > start and run[end - 1] in _PARTICLES:
        end -= 1
    return run[start:end]


def author_name(questions: Sequence[str],
                answers: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """An author's full name and aliases from their QA pairs.

    The name is the 2-4-word capitalised run found in the most QA pairs (ties: the longer); it
    must occur in at least 30 % of the pairs, else the name is ``None``. Aliases are other runs
    seen in two or more pairs whose words all belong to the name (e.g. "Xin Lee").
    """
    counts: Counter[str] = Counter()
    for question, answer in zip(questions, answers, strict=True):
        counts.update(_name_runs(f"{question}\n{answer}"))
    if not counts:
        return None, ()
    name, count = max(counts.items(), key=lambda item: (item[1], len(item[0].split())))
    if count < _MIN_NAME_SHARE * len(questions):
        return None, ()
    words = set(name.split())
    aliases = sorted(run for run, n in counts.items()
                     if run != name and n >= 2 and set(run.split()) <= words)
    return name, tuple(aliases)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _targets(rows: Sequence[Row], where: str) -> list[ForgetTarget]:
    if len(rows) % QA_PER_AUTHOR:
        raise DatasetError(f"{where}: {len(rows)} rows is not a multiple of {QA_PER_AUTHOR}")
    targets = []
    for start in range(0, len(rows), QA_PER_AUTHOR):
        block = rows[start:start + QA_PER_AUTHOR]
        questions = tuple(row.text("question") for row in block)
        answers = tuple(row.text("answer") for row in block)
        name, aliases = author_name(questions, answers)
        if name is None:
            raise DatasetError(f"{block[0].where}: cannot find the author's name in rows "
                               f"{start}-{start + QA_PER_AUTHOR - 1}")
        targets.append(ForgetTarget(id=_slug(name), name=name, aliases=aliases,
                                    description=f"{name}, a fictitious author from TOFU",
                                    questions=questions, answers=answers))
    if len({t.id for t in targets}) != len(targets):
        raise DatasetError(f"{where}: two authors share a name")
    return targets


def _forget_probes(plain: list[Row], perturbed: list[Row], split: str,
                   targets: Sequence[ForgetTarget], *, paraphrased: bool) -> list[Probe]:
    if len(plain) != len(perturbed):
        raise DatasetError(f"{split}.json has {len(plain)} rows but {split}_perturbed.json "
                           f"has {len(perturbed)}")
    probes = []
    for index, (row, extra) in enumerate(zip(plain, perturbed, strict=True)):
        if extra.text("question") != row.text("question"):
            raise DatasetError(f"{extra.where}: question differs from {row.where}")
        target = targets[index // QA_PER_AUTHOR]
        asked = (extra.text("paraphrased_question"), extra.text("paraphrased_answer")) \
            if paraphrased else (row.text("question"), row.text("answer"))
        probes.append(Probe(
            id=f"tofu/{split}{'/paraphrased' if paraphrased else ''}/{index}", question=asked[0],
            answer=asked[1], kind="forget", target_id=target.id, subject=target.name,
            paraphrased_question=extra.text("paraphrased_question"),
            paraphrased_answer=extra.text("paraphrased_answer"),
            perturbed_answers=extra.texts("perturbed_answer")))
    return probes


def _retain_probes(rows: list[Row], perturbed: list[Row], split: str) -> list[Probe]:
    extras = {(row.text("question"), row.text("answer")): row for row in perturbed}
    probes = []
    for index, row in enumerate(rows):
        extra = extras.get((row.text("question"), row.text("answer")))
        probes.append(Probe(
            id=f"tofu/{split}/{index}", question=row.text("question"), answer=row.text("answer"),
            kind="retain",
            paraphrased_question=extra.text("paraphrased_question") if extra else None,
            paraphrased_answer=extra.text("paraphrased_answer") if extra else None,
            perturbed_answers=extra.texts("perturbed_answer") if extra else ()))
    return probes


def _neighbour_probes(rows: list[Row], perturbed: list[Row], name: str) -> list[Probe]:
    if len(rows) != len(perturbed):
        raise DatasetError(f"{name}.json and {name}_perturbed.json differ in length")
    probes = []
    for index, (row, extra) in enumerate(zip(rows, perturbed, strict=True)):
        options = tuple(row.text(f"option{i}") for i in range(1, 5))
        answer = row.text("answer")
        if answer not in options or extra.text("question") != row.text("question"):
            raise DatasetError(f"{row.where}: answer is not an option, or the row does not "
                               f"match {extra.where}")
        probes.append(Probe(
            id=f"tofu/{name}/{index}", question=row.text("question"), answer=answer,
            kind="neighbour", type=name, choices=options, correct_index=options.index(answer),
            perturbed_answers=extra.texts("perturbed_answer")))
    return probes


def load_tofu(data_dir: str | os.PathLike[str] | None = None, *, split: str = "forget10",
              forget_questions: ForgetQuestions = "original", limit: int | None = None,
              seed: int = 0) -> Benchmark:
    """Load TOFU for ``split`` (forget01/05/10) from ``<data_dir>/tofu``; forget probes ask
    the ``original`` or the ``paraphrased`` questions (see the module docstring).

    ``limit`` caps each probe list (sampled with ``seed``); targets are never sampled.
    Raises ``DatasetError`` for an unknown split or a missing/malformed file.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown TOFU split {split!r}; choose one of {sorted(SPLITS)}")
    if forget_questions not in ("original", "paraphrased"):
        raise DatasetError(f"forget_questions must be 'original' or 'paraphrased', not "
                           f"{forget_questions!r}")
    files = DataFiles(data_dir, "tofu")
    forget = files.jsonl(f"{split}.json")
    targets = _targets(forget, f"{files.root}/tofu/{split}.json")
    forget_probes = _forget_probes(forget, files.jsonl(f"{split}_perturbed.json"), split, targets,
                                   paraphrased=forget_questions == "paraphrased")
    retain_split = SPLITS[split]
    retain_probes = _retain_probes(files.jsonl(f"{retain_split}.json"),
                                   files.jsonl("retain_perturbed.json"), retain_split)
    neighbours = [probe for name in ("real_authors", "world_facts")
                  for probe in _neighbour_probes(files.jsonl(f"{name}.json"),
                                                 files.jsonl(f"{name}_perturbed.json"), name)]
    return Benchmark(
        name="tofu", targets=tuple(targets),
        forget_probes=sample(forget_probes, limit, seed=seed, label="forget"),
        neighbour_probes=sample(neighbours, limit, seed=seed, label="neighbour"),
        retain_probes=sample(retain_probes, limit, seed=seed, label="retain"),
        files=dict(files.hashes), params={"split": split, "forget_questions": forget_questions,
                                            "limit": limit, "seed": seed})
