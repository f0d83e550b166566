"""MUSE knowledge memorisation (KnowMem) QA (Shi et al., 2024, arXiv:2407.06460).

``news`` (BBC articles) or ``books`` (Harry Potter). Forget probes come from ``forget_qa``,
retain probes from ``retain2_qa``. The target carries the few-shot ``forget_qa_icl`` pairs as
its example QA (they are never scored).
"""

from __future__ import annotations

import os

from benchmarks.datasets.base import (
    Benchmark, DataFiles, ForgetTarget, Probe, ProbeKind, Row, sample,
)
from benchmarks.errors import DatasetError

__all__ = ["CORPORA", "load_muse"]

CORPORA = {
    "news": ForgetTarget(id="muse-news", name="MUSE News",
                         description="BBC news articles published after August 2023 "
                                     "(the MUSE-News forget set)"),
    "books": ForgetTarget(id="muse-books", name="Harry Potter",
                          description="J.K. Rowling's Harry Potter books (the MUSE-Books "
                                      "forget set)"),
}


def _probes(rows: list[Row], corpus: str, split: str, kind: ProbeKind) -> list[Probe]:
    target_id = CORPORA[corpus].id if kind == "forget" else None
    return [Probe(id=f"muse/{corpus}/{split}/{index}", question=row.text("question"),
                  answer=row.text("answer"), kind=kind,
                  target_id=target_id)
            for index, row in enumerate(rows)]


def load_muse(data_dir: str | os.PathLike[str] | None = None, *, corpus: str = "news",
              limit: int | None = None, seed: int = 0) -> Benchmark:
    """Load MUSE KnowMem for ``corpus`` (news or books) from ``<data_dir>/muse``.

    ``limit`` caps each probe list (sampled with ``seed``). Raises ``DatasetError`` for an
    unknown corpus or a missing/malformed file.
    """
    if corpus not in CORPORA:
        raise DatasetError(f"unknown MUSE corpus {corpus!r}; choose one of {sorted(CORPORA)}")
    files = DataFiles(data_dir, "muse")
    base = f"{corpus}/knowmem"
    shots = files.json_array(f"{base}/forget_qa_icl.json")
    template = CORPORA[corpus]
    target = ForgetTarget(id=template.id, name=template.name, aliases=template.aliases,
                          description=template.description,
                          questions=tuple(row.text("question") for row in shots),
                          answers=tuple(row.text("answer") for row in shots))
    forget = _probes(files.json_array(f"{base}/forget_qa.json"), corpus, "forget_qa", "forget")
    retain = _probes(files.json_array(f"{base}/retain2_qa.json"), corpus, "retain2_qa", "retain")
    return Benchmark(name=f"muse-{corpus}", targets=(target,),
                     forget_probes=sample(forget, limit, seed=seed, label="forget"),
                     retain_probes=sample(retain, limit, seed=seed, label="retain"),
                     files=dict(files.hashes),
                     params={"corpus": corpus, "limit": limit, "seed": seed})
