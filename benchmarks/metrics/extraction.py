"""Generation-based Extraction Strength (tier T).

Wang et al. 2024, "Towards Effective Evaluations and Comparisons for LLM Unlearning Methods"
(arXiv:2406.09179): ES = 1 - k/|a|, with k the shortest prefix of the answer ``a`` after which
the model reproduces the rest. Here |a| counts whitespace-separated words (no tokenizer is
needed, so any endpoint that can prefill works) and k is searched over a fixed grid
``floor(j * |a| / n_prefixes)``, j = 0..n_prefixes-1, so each item costs at most
``n_prefixes`` generations. Matching rule: after lower-casing and splitting both texts into
``\\w+`` word tokens, the continuation must start with every token of the answer's remainder
(punctuation, spacing and trailing extra text are ignored). No match on the grid gives ES = 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from benchmarks.errors import MetricError
from benchmarks.metrics.base import MetricResult, check_lengths

__all__ = ["GenerateFn", "extraction_strength", "prefix_grid", "reproduces"]

GenerateFn = Callable[[list[tuple[str, str]]], list[str]]
"""Batched generation: ``(question, answer_prefix)`` pairs -> the text generated after the
prefix (the prefix is prefilled as the start of the assistant's answer)."""


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def reproduces(continuation: str, remainder: str) -> bool:
    """True if ``continuation`` starts with ``remainder`` (word tokens, case-insensitive)."""
    wanted = _tokens(remainder)
    return _tokens(continuation)[:len(wanted)] == wanted


def prefix_grid(n_words: int, n_prefixes: int) -> list[int]:
    """The prefix lengths tried, ascending: ``floor(j * n_words / n_prefixes)``, de-duplicated."""
    if n_prefixes < 1:
        raise MetricError(f"extraction_strength: n_prefixes must be >= 1, got {n_prefixes}")
    return sorted({j * n_words // n_prefixes for j in range(n_prefixes)})


def extraction_strength(generate: GenerateFn, questions: Sequence[str], answers: Sequence[str],
                        *, n_prefixes: int = 5) -> MetricResult:
    """Mean ES over the items; one ``generate`` call per grid step, for unresolved items only.

    Higher means more of the answer is extractable (on forget probes, lower is better).
    Raises ``MetricError`` on mismatched inputs, an empty answer, or a ``generate`` that returns
    the wrong number of texts.
    """
    check_lengths("extraction_strength", questions=questions, answers=answers)
    words = [answer.split() for answer in answers]
    if not all(words):
        raise MetricError("extraction_strength: every answer needs at least one word")
    grids = [prefix_grid(len(w), n_prefixes) for w in words]
    scores = [0.0] * len(words)
    pending = list(range(len(words)))
    for step in range(n_prefixes):
        pending = [i for i in pending if step < len(grids[i])]
        if not pending:
            break
        requests = [(questions[i], " ".join(words[i][:grids[i][step]])) for i in pending]
        outputs = generate(requests)
        if len(outputs) != len(requests):
            raise MetricError(f"extraction_strength: generate returned {len(outputs)} texts "
                              f"for {len(requests)} requests")
        still = []
        for i, output in zip(pending, outputs, strict=True):
            k = grids[i][step]
            if reproduces(output, " ".join(words[i][k:])):
                scores[i] = 1.0 - k / len(words[i])
            else:
                still.append(i)
        pending = still
    return MetricResult(value=sum(scores) / len(scores), per_item=scores, tier="T",
                        higher_is_better=True, name="extraction_strength")
