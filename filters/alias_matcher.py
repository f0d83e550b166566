"""Name and alias matching on normalised tokens (the cheapest guard).

Thaker et al. 2024 (*Guardrail Baselines for Unlearning in LLMs*) filter prompts and outputs
that mention a forget target; here a target's name and aliases are matched as whole token
sequences after :mod:`filters.normalize`, so "Ann" never matches "Annual" while "J. K. Rowling",
"j.k.rowling" and "JK R0wling" all match "JK Rowling". Lookup is a dict keyed by an alias's
first token, so hundreds of aliases cost one dict probe per token.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from filters.base import Match, Message, Verdict
from proxy.core.messages import other_texts, user_turns
from filters.canonical import PLAIN_VIEW, combine, settled_views, views
from filters.normalize import TextFeed, Token, release_limit, tokenize, transliterate
from proxy.core.config import ForgetTargetConfig


_SPELLINGS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("plain", lambda key: key),
    ("reversed", lambda key: key[::-1]),
    ("rot13", lambda key: codecs.encode(key, "rot13")),
    ("transliterated", lambda key: transliterate(key) or key),
)
"""How an alias may be written: as it is, backwards, in ROT13, and in ASCII letters when it is
written in another script ("Марисол Кенби" as "Marisol Kenbi", "罗琳" as "Luo Lin") — its
letters, words joined. A text in another script is read transliterated too
(:class:`filters.normalize.Token` readings), so a Latin alias matches "Марисол" as "marisol"."""
_MAX_PARTIALS = 16
_MIN_INSIDE = 4  # shorter keys are not looked for inside a spelled-out run ("al" in "h a l")


@dataclass(frozen=True)
class AliasEntry:
    """One alias of one forget target, as normalised tokens, and how it is spelled."""

    target_id: str
    alias: str
    tokens: tuple[str, ...]
    transform: str = "plain"

    @property
    def key(self) -> str:
        """The alias's letters, words joined, in its spelling."""
        return dict(_SPELLINGS)[self.transform]("".join(self.tokens))


def _pieces(token: Token, *, at_start: bool) -> tuple[tuple[str, ...], list[str], list[str]]:
    """How ``token`` may take part in a match: its readings taken whole (a spelled-out run
    that starts a match may start it part-way), the readings a match may end part-way through
    (within a run), and its readings less a possessive "s"."""
    whole = token.readings()
    if token.is_run and at_start:
        whole = tuple(token.text[i:] for i in range(len(token.text)))
    run_ends = [r[:i] for r in whole for i in range(1, len(r))] if token.is_run else []
    possessive = [r[:-1] for r in whole if len(r) > 2 and r.endswith("s")]
    return whole, run_ends, possessive


class AliasTable:
    """All aliases of a policy in every spelling of :data:`_SPELLINGS`, keyed by their letters.

    A run of consecutive tokens matches an alias when their readings joined spell its key, so
    separators inside or between the alias's words do not hide it ("Zor-blax", "Zor/blax",
    "Z o r b l a x", "Zor<!-- -->blax"); a run must start and end at token boundaries, so "Ann"
    never matches "Annual". A merged run of single letters (a spelled-out text) matches an
    alias anywhere inside it.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.entries: list[AliasEntry] = []
        self._by_key: dict[str, AliasEntry] = {}
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for target_id, alias in pairs:
            tokens = tuple(t.text for t in tokenize(alias))
            if not tokens or (target_id, tokens) in seen:
                continue
            seen.add((target_id, tokens))
            self.entries.append(AliasEntry(target_id, alias, tokens))
            for transform, spell in _SPELLINGS:
                self._by_key.setdefault(spell("".join(tokens)),
                                        AliasEntry(target_id, alias, tokens, transform))
        self._prefixes = {key[:i] for key in self._by_key for i in range(1, len(key) + 1)}
        self.max_tokens = max((len(e.tokens) for e in self.entries), default=0)
        self.max_chars = max((len(e.alias) for e in self.entries), default=0)
        self.max_key = max(map(len, self._by_key), default=0)

    @classmethod
    def from_targets(cls, targets: Iterable[ForgetTargetConfig]) -> AliasTable:
        """The names and aliases of ``targets``."""
        return cls((t.id, name) for t in targets for name in t.names)

    def find(self, tokens: Sequence[Token], *, min_end: int = 0) -> AliasEntry | None:
        """The first (longest at its start) alias in ``tokens`` ending after ``min_end`` tokens."""
        for start, token in enumerate(tokens):
            if token.is_run and start + 1 > min_end:
                hit = self._inside(token.text)
                if hit is not None:
                    return hit
            hit = self._match_at(tokens, start, min_end)
            if hit is not None:
                return hit
        return None

    def _match_at(self, tokens: Sequence[Token], start: int, min_end: int) -> AliasEntry | None:
        # (letters so far, whether they started part-way through a spelled-out run, whether a
        # token is read as written: a number read as leet alone never spells a name, "1515")
        partials: list[tuple[str, bool, bool]] = [("", False, False)]
        best = None
        for end in range(start, len(tokens)):
            token = tokens[end]
            whole, run_ends, possessive = _pieces(token, at_start=end == start)
            number = token.text.isdigit()
            grown, found = [], None  # the first spelling found at this end wins
            for partial, partway, had_letters in partials:
                with_letters = had_letters or not number
                for reading in whole:
                    spelled = partial + reading
                    if spelled not in self._prefixes:
                        continue
                    with_letters = had_letters or not number or reading == token.text
                    inside = partway or (token.is_run and end == start and reading != token.text)
                    grown.append((spelled, inside, with_letters))
                    if found is None and end + 1 > min_end and with_letters:
                        found = self._accept(self._by_key.get(spelled), inside)
                if found is None and end + 1 > min_end and with_letters:
                    found = self._ending(partial, partway, run_ends, possessive)
            best = found or best
            if not grown:
                break
            partials = list(dict.fromkeys(grown))[:_MAX_PARTIALS]
        return best

    @staticmethod
    def _accept(entry: AliasEntry | None, partway: bool) -> AliasEntry | None:
        """``entry``, unless the match starts or ends part-way through a spelled-out run and
        the alias is too short to tell from chance letters ("ann" in "a n n u a l")."""
        if entry is None or (partway and len(entry.key) < _MIN_INSIDE):
            return None
        return entry

    def _ending(self, partial: str, partway: bool, run_ends: Sequence[str],
                possessive: Sequence[str]) -> AliasEntry | None:
        """An alias that ends inside the token: part-way through a spelled-out run, or before
        the possessive "s" of a name of two words or more ("Stephen Kings fiction")."""
        for piece in run_ends:
            hit = self._accept(self._by_key.get(partial + piece), True)
            if hit is not None:
                return hit
        for piece in possessive:
            hit = self._accept(self._by_key.get(partial + piece), partway)
            if hit is not None and len(hit.tokens) > 1:
                return hit
        return None

    def _inside(self, letters: str) -> AliasEntry | None:
        return next((e for k, e in self._by_key.items() if len(k) >= _MIN_INSIDE and k in letters),
                    None)

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
        keep = self.table.max_key - 1
        self._tail = window[-keep:] if keep > 0 else []
        return hit


def alias_match(hit: AliasEntry, view: str = PLAIN_VIEW) -> Match:
    """The match of an alias found in ``view``, naming the transform that revealed it."""
    transform = combine(view, hit.transform)
    return Match(hit.target_id, f"alias:{hit.alias}", " ".join(hit.tokens), transform)


def find_in_views(table: AliasTable, text: str) -> Match | None:
    """An alias in any view of a complete ``text`` (:func:`filters.canonical.views`)."""
    for view in views(text):
        hit = table.find(tokenize(view.text))
        if hit is not None:
            return alias_match(hit, view.transform)
    return None


def find_in_decoded(table: AliasTable, text: str, *, final: bool) -> Match | None:
    """An alias in a decoded view of a growing ``text`` (its settled part unless ``final``)."""
    for view, tokens in settled_views(text, final=final):
        hit = table.find(tokens)
        if hit is not None:
            return alias_match(hit, view.transform)
    return None


def alias_verdict(guard: str, match: Match | None, started: float) -> Verdict:
    """A block naming the target and alias, or an allow."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    if match is None:
        return Verdict("allow", guard, score=0.0, threshold=1.0, elapsed_ms=elapsed_ms)
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
            match = find_in_views(self.table, turn)
            if match is not None:
                return alias_verdict(self.name, match, started)
        return alias_verdict(self.name, None, started)

    def check_output(
        self, messages: Sequence[Message], text: str, *, final: bool = False
    ) -> Verdict:
        """Block when ``text`` names a target (``final`` as in :class:`OutputFilter`)."""
        started = time.perf_counter()
        hit = AliasScanner(self.table).feed(TextFeed().advance(text, final=final))
        match = alias_match(hit) if hit is not None else None
        if match is None and len(self.table):
            match = find_in_decoded(self.table, text, final=final)
        return alias_verdict(self.name, match, started)

    def release_limit(self, text: str) -> int:
        """The settled text but its hold-back (:func:`filters.normalize.release_limit`)."""
        return release_limit(text, self.hold_back_chars)

    def __repr__(self) -> str:
        return f"AliasGuard({len(self.table)} aliases)"
