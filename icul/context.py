"""The ICUL method of a policy: choose demonstrations for a query and put them in context.

Forget demonstrations are the policy's forget questions nearest to the query in its FAISS
index (Pawelczyk et al. 2023); retain demonstrations are the ERASE representatives of the
retain pool (Muresanu et al. 2024), so deleting a retain example is exact and mostly free.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from icul.demonstrations import (
    Demonstration,
    TokenCounter,
    build_chat_messages,
    build_completion_prompt,
    count_added_tokens,
)
from icul.erase import EraseSelector, EraseStats
from proxy.core.config import ForgetTargetConfig, ICULConfig, PolicyConfig, QAExample
from proxy.core.errors import ConfigError
from proxy.core.messages import user_turns


class _Index(Protocol):
    def search(self, vectors: np.ndarray, k: int = 1) -> list[list[tuple[float, Any]]]: ...


class _Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def example_id(question: str) -> str:
    """A stable id for a retain example (its question's sha256 prefix)."""
    return hashlib.sha256(question.strip().encode("utf-8")).hexdigest()[:16]


def _forget_demos(
    targets: Sequence[ForgetTargetConfig], mode: str, where: str
) -> dict[str, Demonstration]:
    demos: dict[str, Demonstration] = {}
    for target in targets:
        for qa in target.questions:
            if mode == "perturbed" and qa.perturbed_answer is None:
                raise ConfigError(
                    f"{where}.forget_answer: 'perturbed' needs a perturbed_answer for every forget "
                    f"question; target {target.id!r} has none for {qa.question!r}"
                )
            demos[qa.question] = Demonstration(qa.question, qa.answer or "", qa.perturbed_answer)
    return demos


class ICULMethod:
    """Builds the in-context unlearning prompt of one policy (thread-safe)."""

    def __init__(
        self,
        cfg: ICULConfig,
        *,
        targets: Sequence[ForgetTargetConfig],
        retain: Sequence[QAExample],
        index: _Index,
        embedder: _Embedder,
        refusal_text: str,
        where: str = "icul",
    ) -> None:
        self.cfg = cfg
        self._index, self._embedder, self._refusal = index, embedder, refusal_text
        self._forget = _forget_demos(targets, cfg.forget_answer, where)
        pool = {example_id(r.question): Demonstration(r.question, r.answer) for r in retain if r.answer}
        self._pool = pool
        self._lock = threading.Lock()
        self._selector: EraseSelector | None = None
        if pool and cfg.s > 0 and cfg.retain_selection == "erase":
            ids = list(pool)
            vectors = embedder.embed([pool[i].question for i in ids])
            self._selector = EraseSelector(ids, vectors, k=cfg.s, epsilon=cfg.epsilon, seed=cfg.seed)

    def forget_demonstrations(self, query: str) -> list[Demonstration]:
        """The ``k`` forget questions nearest to ``query``, nearest first."""
        if self.cfg.k == 0 or not self._forget:
            return []
        hits = self._index.search(self._embedder.embed([query]), k=8 * self.cfg.k + 8)[0]
        chosen: list[Demonstration] = []
        for _score, item in hits:
            demo = self._forget.get(item.text) if item.kind == "question" else None
            if demo is not None and demo not in chosen:
                chosen.append(demo)
            if len(chosen) == self.cfg.k:
                break
        return chosen

    def retain_demonstrations(self) -> list[Demonstration]:
        """The ERASE representatives of the retain pool (or a seeded random sample of it)."""
        with self._lock:
            if self.cfg.retain_selection == "random":
                ids = sorted(self._pool)
                rng = np.random.default_rng(self.cfg.seed)
                picks = rng.choice(len(ids), size=min(self.cfg.s, len(ids)), replace=False)
                return [self._pool[ids[i]] for i in sorted(picks)]
            ids = self._selector.selected() if self._selector else []
            return [self._pool[i] for i in ids]

    def has_retain(self, question: str) -> bool:
        """Whether ``question`` is in the retain pool."""
        with self._lock:
            return example_id(question) in self._pool

    def remove_retain(self, question: str) -> bool:
        """Delete a retain example from the pool exactly; True when k-means was recomputed."""
        key = example_id(question)
        with self._lock:
            if key not in self._pool:
                raise KeyError(question)
            del self._pool[key]
            if self._selector is None:
                return True  # a random sample is simply drawn again from the smaller pool
            return self._selector.delete(key)

    @property
    def stats(self) -> EraseStats:
        """ERASE deletion counters (deletions, recomputes)."""
        return self._selector.stats if self._selector else EraseStats()

    @property
    def when(self) -> str:
        return self.cfg.when

    def apply_chat(
        self, messages: list[dict[str, Any]], count_tokens: TokenCounter
    ) -> tuple[list[dict[str, Any]], int]:
        """The conversation with demonstrations (the forget ones nearest its last user turn)
        in front of it, and the tokens added."""
        query = (user_turns(messages) or [""])[-1]
        out = build_chat_messages(
            messages, self.forget_demonstrations(query), self.retain_demonstrations(),
            forget_answer=self.cfg.forget_answer, refusal_text=self._refusal,
        )
        return out, count_added_tokens(messages, out, count_tokens)

    def apply_completion(self, prompt: str, count_tokens: TokenCounter) -> tuple[str, int]:
        """The few-shot completion prompt, and the tokens added."""
        kwargs: dict[str, Any] = {"template": self.cfg.template} if self.cfg.template else {}
        out = build_completion_prompt(
            prompt, self.forget_demonstrations(prompt), self.retain_demonstrations(),
            wrap_query=self.cfg.completion_query == "wrap", forget_answer=self.cfg.forget_answer,
            refusal_text=self._refusal, **kwargs,
        )
        return out, count_added_tokens(prompt, out, count_tokens)

    def describe(self) -> list[str]:
        """Lines for ``check-config``: the chosen retain demonstrations."""
        retain = self.retain_demonstrations()
        how = "by ERASE" if self.cfg.retain_selection == "erase" else "at random"
        lines = [f"icul: k={self.cfg.k} forget demos per query (nearest of {len(self._forget)}), "
                 f"s={self.cfg.s} retain demos chosen {how} from {len(self._pool)}:"]
        lines += [f"  - {d.question} -> {d.answer}" for d in retain]
        return lines


def build_icul(cfg: ICULConfig, *, policy: PolicyConfig, where: str,
               artifacts: Callable[[], Any]) -> ICULMethod:
    """The ``icul`` context method of a policy (its forget index and embedder from
    ``artifacts()``, the policy's compiled artefacts)."""
    built = artifacts()
    return ICULMethod(cfg, targets=policy.forget, retain=policy.retain, index=built.index,
                      embedder=built.embedder, refusal_text=policy.refusal_text, where=where)
