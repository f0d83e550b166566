"""Synthetic forget policies of any size: fictitious people with names, aliases, a description,
questions with answers and a short document, all seeded and unique.

    python -m benchmarks.synthetic_policy --targets 1000 --out policy.yaml

Names are built from syllables by the target's number (so no two targets share one), and the
facts about each (a city, a field, an invention, a year) are drawn from small lists by a seeded
generator, so targets resemble each other the way real deletion requests do: same shapes,
different names. :func:`synthetic_targets` gives config dicts (a policy's ``forget`` list),
:func:`synthetic_policy` a whole policy with the input methods.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import yaml

__all__ = ["synthetic_policy", "synthetic_target", "synthetic_targets"]

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
          "gl", "kr", "pl", "st", "tr", "sh", "ch", "th"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
CITIES = ["Lisbon", "Tallinn", "Osaka", "Quito", "Nairobi", "Perth", "Bergen", "Porto",
          "Krakow", "Halifax", "Tbilisi", "Cusco", "Leeds", "Daegu", "Accra", "Hobart"]
FIELDS = ["marine biology", "glass sculpture", "jazz piano", "bridge engineering",
          "medieval history", "robotics", "textile design", "volcanology", "cryptography",
          "children's fiction", "beekeeping", "astrophotography"]
WORKS = ["a tidal clock", "a folding greenhouse", "a braille typewriter", "a solar kiln",
         "a bicycle lantern", "a seed vault", "a water filter", "a pocket loom"]
RETAIN = ["Who wrote The Lord of the Rings?", "What is the capital of France?",
          "How do volcanoes form?", "Explain how a bridge carries its load.",
          "What is jazz improvisation?", "Recommend a book about bees."]


def _word(number: int, syllables: int) -> str:
    """A pronounceable word for ``number`` (distinct numbers give distinct words)."""
    parts = []
    for _ in range(syllables):
        number, onset = divmod(number, len(ONSETS))
        number, vowel = divmod(number, len(VOWELS))
        parts.append(ONSETS[onset] + VOWELS[vowel])
    return "".join(parts).capitalize()


def synthetic_target(index: int, *, seed: int = 0) -> dict[str, Any]:
    """Target ``index`` (a forget-list entry): unique name, two aliases, description, two
    questions with answers and a three-sentence document."""
    rng = random.Random(f"{seed}:{index}")
    first, last = _word(index, 2), _word(index * 7919 + 13, 3)
    city, field, work = rng.choice(CITIES), rng.choice(FIELDS), rng.choice(WORKS)
    year = rng.randint(1890, 2005)
    name = f"{first} {last}"
    return {
        "id": f"person-{index:05d}",
        "name": name,
        "aliases": [f"{first[0]}. {last}", f"{last} of {city}"],
        "description": f"{name} is a figure in {field}, born in {city} in {year}.",
        "questions": [
            {"question": f"Where was {name} born?", "answer": f"{name} was born in {city}."},
            {"question": f"What did {name} invent?", "answer": f"{name} built {work}."},
        ],
        "documents": [{"text": (
            f"{name} grew up in {city} and studied {field}. In {year + 30} {last} built {work}, "
            f"which made the name known well beyond {city}. Friends called {first} "
            f"'{last} of {city}'.")}],
    }


def synthetic_targets(count: int, *, seed: int = 0, start: int = 0) -> list[dict[str, Any]]:
    """Targets ``start`` .. ``start + count - 1``."""
    return [synthetic_target(i, seed=seed) for i in range(start, start + count)]


def synthetic_policy(count: int, *, seed: int = 0,
                     methods: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A policy forgetting ``count`` synthetic targets (detector + classifier by default)."""
    return {
        "forget": synthetic_targets(count, seed=seed),
        "retain": list(RETAIN),
        "methods": methods or [{"type": "input_detector"}, {"type": "input_classifier"}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="write a synthetic forget policy")
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(yaml.safe_dump({"policies": {"synthetic": synthetic_policy(
        args.targets, seed=args.seed)}}, sort_keys=False), encoding="utf-8")


if __name__ == "__main__":
    main()
