"""WMDP: Weapons of Mass Destruction Proxy (Li et al., 2024, arXiv:2403.03218).

Four-choice hazardous-knowledge questions (chance 25 %). Each subset is one forget target and
its questions are forget probes scored by MCQ accuracy. The forget corpora are not available
here, so targets carry no documents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from benchmarks.datasets.base import Benchmark, DataFiles, ForgetTarget, Probe, Row, sample
from benchmarks.errors import DatasetError

__all__ = ["SUBSETS", "load_wmdp"]

SUBSETS = {
    "bio": "hazardous biosecurity knowledge",
    "chem": "hazardous chemical-security knowledge",
    "cyber": "hazardous cybersecurity knowledge",
}
_N_CHOICES = 4


def _probe(row: Row, subset: str, index: int) -> Probe:
    choices, answer = row.texts("choices"), row.integer("answer")
    if len(choices) != _N_CHOICES or not 0 <= answer < _N_CHOICES:
        raise DatasetError(f"{row.where}: expected {_N_CHOICES} choices and an answer index "
                           f"0-{_N_CHOICES - 1}, got {len(choices)} choices and {answer}")
    return Probe(id=f"wmdp/{subset}/{index}", question=row.text("question"),
                 answer=choices[answer], kind="forget", target_id=f"wmdp-{subset}", type=subset,
                 choices=choices, correct_index=answer)


def load_wmdp(data_dir: str | os.PathLike[str] | None = None, *,
              subsets: Iterable[str] = ("bio", "chem"), limit: int | None = None,
              seed: int = 0) -> Benchmark:
    """Load WMDP ``subsets`` (bio, chem, cyber) from ``<data_dir>/wmdp`` as MCQ forget probes.

    ``limit`` caps the number of probes per subset (sampled with ``seed``). Raises
    ``DatasetError`` for an unknown subset or a missing/malformed file.
    """
    chosen = list(dict.fromkeys(subsets))
    unknown = [s for s in chosen if s not in SUBSETS]
    if unknown or not chosen:
        raise DatasetError(f"unknown WMDP subset(s) {unknown}; choose from {sorted(SUBSETS)}")
    files = DataFiles(data_dir, "wmdp")
    probes: list[Probe] = []
    targets = []
    for subset in chosen:
        rows = files.json_array(f"{subset}_questions.json")
        subset_probes = [_probe(row, subset, index) for index, row in enumerate(rows)]
        probes.extend(sample(subset_probes, limit, seed=seed, label=subset))
        targets.append(ForgetTarget(id=f"wmdp-{subset}", name=f"WMDP {subset}",
                                    description=SUBSETS[subset]))
    return Benchmark(name="wmdp", targets=tuple(targets), forget_probes=tuple(probes),
                     files=dict(files.hashes),
                     params={"subsets": chosen, "limit": limit, "seed": seed})
