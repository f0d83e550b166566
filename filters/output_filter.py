"""The output filter: does the generated text reveal the forget set?

Thaker et al. 2024 check outputs against the forget set and replace a leak with a refusal.
Three checks, cheapest first, on a text that grows while it streams:

* **aliases** — a target's name or alias (:mod:`filters.alias_matcher`);
* **n-gram coverage** — for every forget answer, document chunk and description, the share of
  *its* content word ``ngram_n``-grams (normalised tokens; grams made only of stop words are
  ignored) that also occur in the text; block when some item reaches ``ngram_overlap``.
  Measuring coverage of the forget item (not of the text) means that padding a leak with other
  words does not hide it, and the count can only grow as the text grows;
* **embedding similarity** — each completed sentence (or ``UNIT_CHARS`` piece of a long one)
  whose nearest forget item is at least ``embedding_threshold`` similar and, with retain
  examples, more similar than the nearest retain question or answer by more than
  ``retain_margin``: a short answer a target shares with its neighbours ("Wheel of Fortune",
  the answer to a question about the show's host, who is not the target) is no evidence of the
  target when the policy lists it as something to keep answering.

All three also run on the decoded views of the settled text (:mod:`filters.canonical`: an
answer written in base64, reversed, ROT13, spaced out...); a match names its view.

Every check only looks at *settled* text (tokens followed by a delimiter, completed sentences),
so the decision is prefix-monotone: a text is blocked iff some prefix of it is blocked, and the
stream decision equals the non-stream one. ``final=True`` marks the complete text and also
settles its tail. A stream releases (:meth:`OutputFilter.release_limit`) the settled text less
``hold_back_chars`` (the widest alias or n-gram), and no further than the last sentence judged,
the first n-gram of any forget item, or the first character a decoded view changed
(:meth:`OutputScanner.releasable`), so the text completing a blocked alias, n-gram or sentence
is never sent, while a sentence that matches nothing goes out as soon as it is judged.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from filters.alias_matcher import AliasScanner, AliasTable, alias_hold_back, alias_match
from filters.base import Match, Message, Verdict
from filters.embedder import Embedder, nearest_similarity
from filters.forget_index import ForgetIndex
from filters.canonical import PLAIN_VIEW, settled_views
from filters.normalize import TextFeed, Token, release_limit, settled_end, tokenize
from proxy.core.config import OutputFilterConfig

if TYPE_CHECKING:
    from filters.artifacts import PolicyArtifacts

UNIT_CHARS = 200
TIE = 1e-4  # float32 noise: a text as similar to a retain text as to a forget item is a tie
MIN_UNIT_TOKENS = 3
NGRAM_KINDS = frozenset({"answer", "chunk", "description"})
_STOP_WORDS = (
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those he she they his her their him them i you we our your has have had do "
    "does did not no so if than then there which who whom what when where how also into about"
)
_STOP = frozenset(_STOP_WORDS.split())
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


class NgramTable:
    """Content n-grams of the forget answers, chunks and descriptions, with an inverted index."""

    def __init__(self, index: ForgetIndex, n: int) -> None:
        self.n = n
        self.items = [item for item in index.items if item.kind in NGRAM_KINDS]
        self.sizes: list[int] = []
        self.postings: dict[tuple[str, ...], list[int]] = {}
        for number, item in enumerate(self.items):
            grams = set(self.grams([t.text for t in tokenize(item.text)]))
            self.sizes.append(len(grams))
            for gram in grams:
                self.postings.setdefault(gram, []).append(number)
        spans = [self._max_span_chars(item.text) for item in self.items]
        self.max_chars = max(spans, default=0)

    def grams(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        """The content n-grams of a token sequence."""
        out = []
        for start in range(len(words) - self.n + 1):
            gram = tuple(words[start : start + self.n])
            if not all(w in _STOP for w in gram):
                out.append(gram)
        return out

    def _max_span_chars(self, text: str) -> int:
        words = text.split()
        return max((len(" ".join(words[i : i + self.n])) for i in range(len(words))), default=0)


class NgramScanner:
    """Counts, per forget item, how many of its n-grams a growing token stream has covered."""

    def __init__(self, table: NgramTable, overlap: float) -> None:
        self.table = table
        self.overlap = overlap
        self._tail: list[str] = []
        self._seen: set[tuple[str, ...]] = set()
        self._counts = [0] * len(table.items)
        self.best = 0.0
        self.fed = 0
        self.first_hit: int | None = None  # the first token of the first gram of any item

    def feed(self, tokens: list[Token]) -> int | None:
        """The number of an item whose coverage reached ``overlap``, if any."""
        words = self._tail + [t.text for t in tokens]
        base, n = self.fed - len(self._tail), self.table.n
        self.fed += len(tokens)
        for start in range(len(words) - n + 1):
            gram = tuple(words[start : start + n])
            if gram in self._seen or all(w in _STOP for w in gram):
                continue
            self._seen.add(gram)
            postings = self.table.postings.get(gram, ())
            if postings and self.first_hit is None:
                self.first_hit = base + start
            for number in postings:
                self._counts[number] += 1
                coverage = self._counts[number] / self.table.sizes[number]
                self.best = max(self.best, coverage)
                if coverage >= self.overlap:
                    return number
        self._tail = words[-(self.table.n - 1) :]
        return None


class UnitSplitter:
    """Cuts a growing text into completed sentences (at most ``UNIT_CHARS`` characters each)."""

    def __init__(self) -> None:
        self._start = 0

    @property
    def start(self) -> int:
        """Where the next unit starts: the text before it is cut into units."""
        return self._start

    def feed(self, text: str, *, final: bool) -> list[str]:
        units = []
        while True:
            window = text[self._start : self._start + UNIT_CHARS]
            hit = _SENTENCE_END.search(text, self._start, self._start + UNIT_CHARS + 1)
            if hit is not None and hit.start() < self._start + UNIT_CHARS:
                end = hit.start() + 1
            elif len(text) > self._start + UNIT_CHARS:
                end = self._start + UNIT_CHARS
            else:
                if final and window.strip():
                    units.append(window)
                    self._start = len(text)
                return [u for u in units if len(tokenize(u)) >= MIN_UNIT_TOKENS]
            units.append(text[self._start : end])
            self._start = end


class OutputScanner:
    """The incremental state of one output stream; blocked stays blocked."""

    def __init__(self, guard: OutputFilter) -> None:
        self.guard = guard
        self._feed = TextFeed()
        self._aliases = AliasScanner(guard.aliases) if guard.aliases is not None else None
        self._ngrams = NgramScanner(guard.ngrams, guard.ngram_overlap)
        self._units = UnitSplitter()
        self._best_similarity = 0.0
        self._viewed = -1  # the settled length the decoded views were last computed for
        self._embedded: set[str] = set()  # decoded units already embedded
        self._decoded_from: int | None = None  # the first character a decoded view changed
        self.verdict: Verdict | None = None

    @property
    def seen(self) -> str:
        return self._feed.seen

    def check(self, text: str, *, final: bool = False) -> Verdict:
        """The verdict on ``text``, which must extend the text of the previous call."""
        started = time.perf_counter()
        if self.verdict is not None and self.verdict.is_block:
            return self.verdict
        match, score, threshold = self._scan(text, final)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if match is not None:
            self.verdict = Verdict(
                "block",
                self.guard.name,
                score=score,
                threshold=threshold,
                match=match,
                elapsed_ms=elapsed_ms,
            )
            return self.verdict
        return Verdict(
            "allow",
            self.guard.name,
            score=self._best_similarity,
            threshold=self.guard.embedding_threshold or 0.0,
            elapsed_ms=elapsed_ms,
        )

    def releasable(self) -> int:
        """How far the checked text may go out as far as this scanner's state goes: not past
        the first n-gram of a forget item (more text may complete its coverage), the first
        character a decoded view changed, or, with embeddings on, the sentence units checked."""
        limits = [len(self.seen)]
        if self._ngrams.first_hit is not None:
            limits.append(self._feed.starts[self._ngrams.first_hit])
        if self._decoded_from is not None:
            limits.append(self._decoded_from)
        if self.guard.embedding_threshold is not None:
            limits.append(self._units.start)
        return min(limits)

    def _scan(self, text: str, final: bool) -> tuple[Match | None, float, float]:
        found = self._scan_tokens(self._feed.advance(text, final=final), self._aliases,
                                  self._ngrams, PLAIN_VIEW)
        if found is not None:
            return found
        found = self._embed_units(self._units.feed(text, final=final), PLAIN_VIEW)
        if found is not None:
            return found
        return self._scan_views(text, final) or (None, 0.0, 0.0)

    def _scan_tokens(self, tokens: list[Token], aliases: AliasScanner | None,
                     ngrams: NgramScanner, view: str) -> tuple[Match, float, float] | None:
        if aliases is not None:
            hit = aliases.feed(tokens)
            if hit is not None:
                return alias_match(hit, view), 1.0, 1.0
        number = ngrams.feed(tokens)
        if number is None:
            return None
        item = self.guard.ngrams.items[number]
        evidence = f"{ngrams.best:.0%} of its {self.guard.ngrams.n}-grams: {item.text[:160]}"
        return Match(item.target_id, item.id, evidence, view), ngrams.best, self.guard.ngram_overlap

    def _embed_units(self, units: list[str], view: str) -> tuple[Match, float, float] | None:
        threshold = self.guard.embedding_threshold
        if threshold is None or not units:
            return None
        vectors = self.guard.embedder.embed(units)
        hits = self.guard.index.search(vectors, k=1)
        retain = nearest_similarity(vectors, self.guard.retain)
        for unit, row, near in zip(units, hits, retain, strict=True):
            if row:
                score, item = row[0]
                self._best_similarity = max(self._best_similarity, score)
                if score >= threshold and score > near + self.guard.retain_margin + TIE:
                    return Match(item.target_id, item.id, unit.strip()[:160], view), score, threshold
        return None

    def _scan_views(self, text: str, final: bool) -> tuple[Match, float, float] | None:
        """Every check on the decoded views of the settled text (recomputed when it grows)."""
        settled = len(text) if final else settled_end(text)
        if settled == self._viewed and not final:
            return None
        self._viewed = settled
        for view, tokens in settled_views(text, final=final):
            changed = next((i for i, (a, b) in enumerate(zip(text, view.text)) if a != b),
                           min(len(text), len(view.text)))
            if self._decoded_from is None or changed < self._decoded_from:
                self._decoded_from = changed
            aliases = AliasScanner(self.guard.aliases) if self.guard.aliases is not None else None
            ngrams = NgramScanner(self.guard.ngrams, self.guard.ngram_overlap)
            found = self._scan_tokens(tokens, aliases, ngrams, view.transform)
            if found is not None:
                return found
            units = [u for u in UnitSplitter().feed(view.text, final=final)
                     if u not in self._embedded]
            self._embedded.update(units)
            found = self._embed_units(units, view.transform)
            if found is not None:
                return found
        return None


class OutputFilter:
    """Blocks generated text that names a target, covers a forget item's n-grams, or is close."""

    cost_rank = 3

    def __init__(
        self,
        index: ForgetIndex,
        embedder: Embedder,
        *,
        aliases: AliasTable | None,
        ngram_n: int = 6,
        ngram_overlap: float = 0.5,
        embedding_threshold: float | None = 0.75,
        retain: np.ndarray | None = None,
        retain_margin: float = 0.0,
        name: str = "output_filter",
        memo_size: int = 64,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.aliases = aliases
        self.ngrams = NgramTable(index, ngram_n)
        self.ngram_overlap = ngram_overlap
        self.embedding_threshold = embedding_threshold
        self.retain = retain
        self.retain_margin = retain_margin
        self.name = name
        windows = [self.ngrams.max_chars + 8]
        windows.append(alias_hold_back(aliases) if aliases is not None else 0)
        self.hold_back_chars = max(windows)
        self._memo: list[OutputScanner] = []
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def scanner(self) -> OutputScanner:
        """A fresh per-stream scanner: call ``check(text_so_far)`` after each delta."""
        return OutputScanner(self)

    def check_output(
        self, messages: Sequence[Message], text: str, *, final: bool = False
    ) -> Verdict:
        """The verdict on ``text``; pass ``final=True`` for the complete text.

        Calls on growing prefixes of one text resume a remembered scanner, so checking every
        prefix costs about as much as checking the whole text once.
        """
        with self._lock:
            fitting = [s for s in self._memo if text.startswith(s.seen)]
            scanner = max(fitting, key=lambda s: len(s.seen)) if fitting else self.scanner()
            if fitting:
                self._memo.remove(scanner)
        verdict = scanner.check(text, final=final)
        if not final:
            with self._lock:
                self._memo.append(scanner)
                del self._memo[: -self._memo_size]
        return verdict

    def release_limit(self, text: str) -> int:
        """The settled text but its hold-back (:func:`filters.normalize.release_limit`), and
        no further than :meth:`OutputScanner.releasable`: a sentence is sent once it is
        judged (not ``UNIT_CHARS`` later) unless it holds an n-gram of a forget item."""
        with self._lock:
            scanner = next((s for s in reversed(self._memo) if s.seen == text), None)
        if scanner is None:
            scanner = self.scanner()
            scanner.check(text)
        return min(release_limit(text, self.hold_back_chars), scanner.releasable())

    def __repr__(self) -> str:
        return (
            f"OutputFilter(n={self.ngrams.n}, overlap={self.ngram_overlap}, "
            f"embedding_threshold={self.embedding_threshold}, "
            f"retain={0 if self.retain is None else len(self.retain)}, "
            f"hold_back_chars={self.hold_back_chars})"
        )


def build_output_filter(cfg: OutputFilterConfig, artifacts: PolicyArtifacts) -> OutputFilter:
    """The ``output_filter`` guard of a policy."""
    return OutputFilter(
        artifacts.index,
        artifacts.embedder,
        aliases=artifacts.aliases if cfg.aliases else None,
        ngram_n=cfg.ngram_n,
        ngram_overlap=cfg.ngram_overlap,
        embedding_threshold=cfg.embedding_threshold,
        retain=artifacts.retain_text_vectors if cfg.retain_margin is not None else None,
        retain_margin=cfg.retain_margin or 0.0,
    )
