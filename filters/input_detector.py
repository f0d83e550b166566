"""Embedding forget-target detection on requests.

A request is flagged when its query text lies within cosine ``threshold`` of a forget item in
the FAISS index (Liu et al. 2024, *ECO*, detect the forget target before the model sees it;
Thaker et al. 2024 show such input filters are a strong unlearning baseline). Two query texts are
looked at: the last user turn, and the last ``context_turns`` user turns joined, so a question
split across turns ("About the author born in Taipei…" / "what is her father's job?") is still
caught. Each text is also read in its decoded views (:mod:`filters.canonical`): the verdict is
the worst view's and its match names the view's transform. With ``aliases`` on, the name/alias
matcher runs first and alone decides a hit.

Both sides of the policy count: a text is flagged only when its nearest forget item is more
similar than its nearest retain example by more than ``retain_margin``, so a retain example is
never blocked and a question closer to what must keep working than to what must be forgotten
is answered ("Who directed the first Harry Potter film?" next to a forget target J. K. Rowling).
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from filters.alias_matcher import AliasGuard
from filters.base import Match, Message, Verdict
from proxy.core.messages import other_texts, user_turns
from filters.embedder import Embedder, nearest_similarity
from filters.forget_index import ForgetIndex, ForgetItem, chunk_text
from filters.canonical import View, views
from filters.normalize import unify
from proxy.core.config import InputDetectorConfig

if TYPE_CHECKING:
    from filters.artifacts import PolicyArtifacts

DEFAULT_CONTEXT_TURNS = 3
WINDOW_WORDS = 60
MAX_WINDOWS = 32


def query_views(
    messages: Sequence[Message], context_turns: int = DEFAULT_CONTEXT_TURNS
) -> list[View]:
    """The texts a request is judged by, each with the decoded views of it.

    The last user turn; when different, the last ``context_turns`` user turns joined; and when
    that is longer than the embedder reads, its last ``MAX_WINDOWS`` sentence windows, so a
    question buried in a long prompt is still seen. Then every other text the model will read
    (:func:`~filters.base.other_texts`: system and tool turns, tool definitions, names...), each
    whole when short and in sentence windows when long, so nothing reaches the model unread.
    Each text comes first as written (invisible characters dropped, NFKC, look-alike letters
    folded: :func:`filters.normalize.unify`), then as each decoded view of
    it (:func:`filters.canonical.views`: base64, reversed, ROT13, spaced letters...).
    """
    texts: list[str] = []
    turns = [unify(t).strip() for t in user_turns(messages) if t.strip()]
    if turns:
        joined = "\n".join(turns[-context_turns:])
        texts += [turns[-1], joined]
        if len(joined.split()) > WINDOW_WORDS:
            texts += chunk_text(joined, max_words=WINDOW_WORDS)[-MAX_WINDOWS:]
    for other in other_texts(messages):
        text = unify(other).strip()
        short = len(text.split()) <= WINDOW_WORDS
        texts += [text] if short else chunk_text(text, max_words=WINDOW_WORDS)
    out: dict[str, View] = {}
    for text in dict.fromkeys(texts):
        for view in views(text):
            out.setdefault(unify(view.text).strip(), view)
    return [View(view.transform, text) for text, view in out.items() if text]


def query_texts(
    messages: Sequence[Message], context_turns: int = DEFAULT_CONTEXT_TURNS
) -> list[str]:
    """The texts of :func:`query_views`."""
    return [view.text for view in query_views(messages, context_turns)]


class EmbeddingDetector:
    """Blocks requests whose nearest forget item is at least ``threshold`` similar."""

    cost_rank = 1

    def __init__(
        self,
        index: ForgetIndex,
        embedder: Embedder,
        *,
        threshold: float,
        context_turns: int = DEFAULT_CONTEXT_TURNS,
        aliases: AliasGuard | None = None,
        retain: np.ndarray | None = None,
        retain_margin: float | None = 0.0,
        name: str = "input_detector",
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.threshold = threshold
        self.context_turns = context_turns
        self.aliases = aliases
        use_retain = retain is not None and retain_margin is not None and len(retain) > 0
        self.retain = retain if use_retain else None
        self.retain_margin = retain_margin or 0.0
        self.name = name

    def score_texts(self, texts: Sequence[str]) -> list[tuple[float, ForgetItem | None]]:
        """The best similarity (and its item) of each text; ``(0.0, None)`` for an empty index."""
        return [(score, item) for score, item, _ in self._scored(texts)]

    def _scored(self, texts: Sequence[str]) -> list[tuple[float, ForgetItem | None, float]]:
        """Each text's best forget similarity, its item, and its nearest retain example's
        similarity (-1 without retain examples)."""
        if not texts:
            return []
        vectors = self.embedder.embed(list(texts))
        hits = self.index.search(vectors, k=1)
        retain = nearest_similarity(vectors, self.retain)
        return [(row[0][0], row[0][1], float(near)) if row else (0.0, None, float(near))
                for row, near in zip(hits, retain, strict=True)]

    def check_input(self, messages: Sequence[Message]) -> Verdict:
        """Alias match first (if enabled), then the embedding similarity of the query texts."""
        started = time.perf_counter()
        named = self.aliases.check_input(messages) if self.aliases is not None else None
        if named is not None and named.is_block:
            return replace(named, guard=self.name,
                           elapsed_ms=(time.perf_counter() - started) * 1000)
        texts = query_views(messages, self.context_turns)
        scored = self._scored([view.text for view in texts])
        flagged = [i for i, (score, item, retain) in enumerate(scored)
                   if item is not None and score >= self.threshold
                   and score > retain + self.retain_margin]
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not flagged:
            score = max((s for s, _, _ in scored), default=0.0)
            return Verdict("allow", self.name, score, self.threshold, elapsed_ms=elapsed_ms)
        best = max(flagged, key=lambda i: scored[i][0])
        score, item, _ = scored[best]
        assert item is not None
        view = texts[best]
        evidence = f"{item.text[:160]} <~ {view.text[:160]}"
        match = Match(item.target_id, item.id, evidence, view.transform)
        return Verdict("block", self.name, score, self.threshold, match, elapsed_ms=elapsed_ms)

    def __repr__(self) -> str:
        return f"EmbeddingDetector({self.index!r}, threshold={self.threshold})"


def build_input_detector(cfg: InputDetectorConfig, artifacts: PolicyArtifacts) -> EmbeddingDetector:
    """The ``input_detector`` guard of a policy."""
    aliases = AliasGuard(artifacts.aliases) if cfg.aliases else None
    return EmbeddingDetector(
        artifacts.index,
        artifacts.embedder,
        threshold=cfg.threshold,
        context_turns=cfg.context_turns,
        aliases=aliases,
        retain=artifacts.retain_vectors if cfg.retain_margin is not None else None,
        retain_margin=cfg.retain_margin,
    )
