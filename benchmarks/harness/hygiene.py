"""Probes that must be answered but name a forget target are not scored as must-answer probes.

A neighbour (or retain) probe that names a target of the same policy — "Which film did Chuck
Norris make with …?" among Bruce Lee's neighbours when Chuck Norris is a target too — is one
the policy is right to refuse: scoring it as a false block would charge the method for doing
its job. Such probes are left out of neighbour/retain scoring and the report counts them per
dataset and kind.

A probe names a target when the target's name or one of its aliases occurs as whole words in
the probe's question, its gold answer or, for a cloze probe, the question with its blank filled
by the answer ("Dirty Work was directed by ___ Saget." answered "Bob" is about Bob Saget), all
normalised by the product's own normaliser
(:func:`filters.normalize.normalize`: case, accents, punctuation and look-alike letters folded).
Any target of the policy counts, the probe's own included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from benchmarks.datasets import ForgetTarget, Probe, ProbeKind
from filters.normalize import normalize

__all__ = ["MUST_ANSWER", "Exclusion", "TargetNames", "exclude_naming_targets"]

MUST_ANSWER: tuple[ProbeKind, ...] = ("neighbour", "retain")
"""The probe kinds a method must keep answering: only these are checked."""


_BLANK = re.compile(r"_+")  # a cloze probe's blank (RWKU writes ___, sometimes _)


def _padded(text: str) -> str:
    return f" {normalize(text)} "


class TargetNames:
    """The normalised names and aliases of a policy's forget targets."""

    def __init__(self, targets: Iterable[ForgetTarget]) -> None:
        self._names: dict[str, str] = {}
        for target in targets:
            for name in (target.name, *target.aliases):
                key = normalize(name)
                if key:
                    self._names.setdefault(key, target.id)

    def named_in(self, text: str) -> list[str]:
        """The ids of the targets ``text`` names (by name or alias), in first-listed order."""
        padded = _padded(text)
        return list(dict.fromkeys(tid for name, tid in self._names.items()
                                  if f" {name} " in padded))

    def named_by(self, probe: Probe) -> list[str]:
        """The ids of the targets a probe's question, gold answer or filled-in cloze names."""
        texts = [probe.question, probe.answer]
        filled, blanks = _BLANK.subn(lambda _: probe.answer, probe.question, count=1)
        if blanks:
            texts.append(filled)
        return list(dict.fromkeys(tid for text in texts for tid in self.named_in(text)))

    def __repr__(self) -> str:
        return f"TargetNames({len(self._names)} names)"


@dataclass(frozen=True)
class Exclusion:
    """Candidates after the check: ``kept`` by kind, and the ``excluded`` probes with the
    targets each names."""

    kept: dict[ProbeKind, tuple[Probe, ...]]
    excluded: dict[ProbeKind, tuple[tuple[Probe, tuple[str, ...]], ...]]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per must-answer kind: candidates checked and how many were excluded."""
        return {kind: {"candidates": len(self.kept[kind]) + len(self.excluded[kind]),
                       "excluded": len(self.excluded[kind])} for kind in self.excluded}


def exclude_naming_targets(candidates: Mapping[ProbeKind, Sequence[Probe]],
                           targets: Iterable[ForgetTarget]) -> Exclusion:
    """Drop the neighbour/retain candidates that name a target (see the module docstring);
    other kinds are kept as they are. Order is preserved."""
    names = TargetNames(targets)
    kept: dict[ProbeKind, tuple[Probe, ...]] = {}
    excluded: dict[ProbeKind, tuple[tuple[Probe, tuple[str, ...]], ...]] = {}
    for kind, probes in candidates.items():
        if kind not in MUST_ANSWER:
            kept[kind] = tuple(probes)
            continue
        named = [(probe, tuple(names.named_by(probe))) for probe in probes]
        kept[kind] = tuple(probe for probe, hits in named if not hits)
        excluded[kind] = tuple((probe, hits) for probe, hits in named if hits)
    return Exclusion(kept, excluded)
