"""Name and alias matching on normalised tokens (the cheapest guard).

Thaker et al. 2024 (*Guardrail Baselines for Unlearning in LLMs*) filter prompts and outputs
that mention a forget target; here a target's name and aliases are matched as whole token
sequences after :mod:`filters.normalize`, so "Ann" never matches "Annual" while "J. K. Rowling",
"j.k.rowling" and "JK R0wling" all match "JK Rowling". Lookup is a dict keyed by an alias's
first token, so hundreds of aliases cost one dict probe per token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from filters.base import Match, Message, Verdict
from proxy.core.messages import other_texts, user_turns
from filters.normalize import TextFeed, Token, release_limit, tokenize
from proxy.core.config import ForgetTargetConfig


@dataclass(frozen=True)
class AliasEntry:
    """One alias of one forget target, as normalised tokens."""

    target_id: str
    alias: str
    tokens: tuple[str, ...]


class AliasTable:
    """All aliases of a policy, indexed by their first token."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._by_first: dict[str, list[AliasEntry]] = {}
        self.entries: list[AliasEntry] = []
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for target_id, alias in pairs:
            tokens = tuple(t.text for t in tokenize(alias))
            if not tokens or (target_id, tokens) in seen:
                continue
            seen.add((target_id, tokens))
            entry = AliasEntry(target_id, alias, tokens)
            self.entries.append(entry)
            self._by_first.setdefault(tokens[0], []).append(entry)
        for candidates in self._by_first.values():
            candidates.sort(key=lambda e: -len(e.tokens))
        self.max_tokens = max((len(e.tokens) for e in self.entries), default=0)
        self.max_chars = max((len(e.alias) for e in self.entries), default=0)

    @classmethod
    def from_targets(cls, targets: Iterable[ForgetTargetConfig]) -> AliasTable:
        """The names and aliases of ``targets``."""
        return cls((t.id, name) for t in targets for name in t.names)

    def find(self, tokens: Sequence[Token], *, min_end: int = 0) -> AliasEntry | None:
        """The first (longest at its start) alias in ``tokens`` ending after ``min_end`` tokens."""
        for start, token in enumerate(tokens):
            for reading in token.readings():
                for entry in self._by_first.get(reading, ()):
                    end = start + len(entry.tokens)
                    if end <= min_end or end > len(tokens):
                        continue
                    rest = zip(entry.tokens[1:], tokens[start + 1 : end], strict=True)
                    if all(want in got.readings() for want, got in rest):
                        return entry
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"AliasTable({len(self.entries)} aliases)"


class AliasScanner:
    """Finds aliases in a token stream fed piece by piece (keeps a short tail of tokens)."""

    def __init__(self, table: AliasTable) -> None:
        self.table = table
        self._tail: list[Token] = []

    def feed(self, tokens: list[Token]) -> AliasEntry | None:
        """An alias that ends in the new tokens, if any."""
        if not tokens or not len(self.table):
            return None
        window = self._tail + tokens
        hit = self.table.find(window, min_end=len(self._tail))
        keep = self.table.max_tokens - 1
        self._tail = window[-keep:] if keep > 0 else []
        return hit


def alias_verdict(guard: str, hit: AliasEntry | None, started: float) -> Verdict:
    """A block naming the target and alias, or an allow."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    if hit is None:
        return Verdict("allow", guard, score=0.0, threshold=1.0, elapsed_ms=elapsed_ms)
    match = Match(hit.target_id, f"alias:{hit.alias}", " ".join(hit.tokens))
    return Verdict("block", guard, score=1.0, threshold=1.0, match=match, elapsed_ms=elapsed_ms)


def alias_hold_back(table: AliasTable) -> int:
    """Characters to withhold so that no alias (spaced or dotted out, plus a delimiter) leaks."""
    return 2 * table.max_chars + 8 if len(table) else 0


class AliasGuard:
    """Blocks requests and outputs that name a forget target (an InputGuard and OutputGuard)."""

    def __init__(self, table: AliasTable, *, name: str = "aliases") -> None:
        self.table = table
        self.name = name
        self.hold_back_chars = alias_hold_back(table)

    def check_input(self, messages: Sequence[Message]) -> Verdict:
        """Block when any text the model will read (every turn, name, tool text) names a target."""
        started = time.perf_counter()
        for turn in user_turns(messages) + other_texts(messages):
            hit = self.table.find(tokenize(turn))
            if hit is not None:
                return alias_verdict(self.name, hit, started)
        return alias_verdict(self.name, None, started)

    def check_output(
        self, messages: Sequence[Message], text: str, *, final: bool = False
    ) -> Verdict:
        """Block when ``text`` names a target (``final`` as in :class:`OutputFilter`)."""
        started = time.perf_counter()
        feed, scanner = TextFeed(), AliasScanner(self.table)
        return alias_verdict(self.name, scanner.feed(feed.advance(text, final=final)), started)

    def release_limit(self, text: str) -> int:
        """The settled text but its hold-back (:func:`filters.normalize.release_limit`)."""
        return release_limit(text, self.hold_back_chars)

    def __repr__(self) -> str:
        return f"AliasGuard({len(self.table)} aliases)"
