"""Property: a forget name written in any supported obfuscation, streamed in random pieces of
1-8 characters among random text of any script, never reaches the client in any view, and the
stream's decision equals the non-stream one (issue 16)."""

from __future__ import annotations

import base64
import codecs
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.alias_matcher import AliasGuard, AliasTable, find_in_views
from filters.confusables import confusable_table
from filters.embedder import build_embedder
from filters.forget_index import ForgetIndex, collect_items
from filters.output_filter import OutputFilter
from proxy.core.config import EmbedderConfig, ForgetTargetConfig
from tests.pipeline_stream import random_pieces, stream_text

EMBEDDER = EmbedderConfig(worker="thread")
_CONSONANTS, _VOWELS = "bcdfgklmnprstvxz", "aeiou"


def _look_alikes() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for code, latin in confusable_table().items():
        out.setdefault(latin, []).append(chr(code))
    return out


LOOK_ALIKES = _look_alikes()
INVISIBLE = "\u200b\u200c\u200d\u2060\u00ad\ufeff\u034f\u2062\u202e\ufe0f"
LEET = str.maketrans("aeiost", "431057")


@st.composite
def names(draw: st.DrawFn) -> str:
    """Two invented words ("Zorblax Quintavi"): never English, never in the vocabulary."""
    def word() -> str:
        syllables = draw(st.lists(st.tuples(st.sampled_from(_CONSONANTS),
                                            st.sampled_from(_VOWELS)), min_size=2, max_size=4))
        tail = draw(st.sampled_from(_CONSONANTS))
        return ("".join(c + v for c, v in syllables) + tail).capitalize()
    return f"{word()} {word()}"


Pick = Callable[[list[str]], str]  # chooses one of the options (hypothesis draws it)


def _per_letter(name: str, options: Callable[[str], list[str]], pick: Pick) -> str:
    return "".join(pick(options(c)) if c.isalpha() else c for c in name)


NameForm = Callable[[str, Pick], str]
NAME_FORMS: dict[str, NameForm] = {
    "plain": lambda n, p: n,
    "upper": lambda n, p: n.upper(),
    "spaced": lambda n, p: "  ".join(" ".join(w) for w in n.split()),
    "dotted": lambda n, p: " ".join(".".join(w) + "." for w in n.split()),
    "dashed": lambda n, p: " / ".join("-".join(w) for w in n.split()),
    "split": lambda n, p: " ".join(
        w[: len(w) // 2] + p(["-", "/", "\\", "<!-- -->", "|", "·"]) + w[len(w) // 2 :]
        for w in n.split()),
    "invisible": lambda n, p: _per_letter(n, lambda c: [c, c, *(c + z for z in INVISIBLE)], p),
    "homoglyphs": lambda n, p: _per_letter(n, lambda c: [c, *LOOK_ALIKES.get(c, [])[:6]], p),
    "leet": lambda n, p: n.translate(LEET),
    "fullwidth": lambda n, p: "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in n),
    "entities": lambda n, p: "".join(f"&#{ord(c)};" for c in n),
    "joined": lambda n, p: n.replace(" ", ""),
}
SENTENCE_FORMS: dict[str, Callable[[str], str]] = {
    "as written": lambda s: s,
    "reversed": lambda s: s[::-1],
    "rot13": lambda s: codecs.encode(s, "rot13"),
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64 of reversed": lambda s: base64.b64encode(s[::-1].encode()).decode(),
    "percent": lambda s: "".join(f"%{b:02X}" for b in s.encode()),
}
ENCODED_FORMS = {"entities"}  # name forms that take a round of decoding (the rest are folds)
TWO_LAYERS = {"base64 of reversed"}
NON_ASCII_FORMS = {"homoglyphs", "fullwidth"}  # ROT13 leaves them as they are
AROUND = ["", " ", "The answer is ", "答案是：", "，她在港口小镇长大。", "ผู้เขียนคือ", "—", "«",
          "»", "…", " 🙂 ", "\n", "Sure! ", " of Vell, who made lenses.", "(", ")", "「", "」",
          "Ñandú ", "Привет, ", "x = 3; ", "v1.2.3 "]


def _spaced_script(char: str) -> bool:
    return char.isalpha() and ord(char) < 0x0E00  # Latin, Greek, Cyrillic...: not CJK or Thai


def _glue(before: str, name: str, after: str) -> str:
    """The name between ``before`` and ``after``, with a space where it would run into a word
    of a spaced script (a name glued to the next word is not the name: "QuintaviusSure")."""
    left = " " if before and _spaced_script(before[-1]) else ""
    right = " " if after and _spaced_script(after[0]) else ""
    return before + left + name + right + after


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name, answer, how it was written): the name in a random form inside a sentence of
    random text, the sentence in a random encoding, more random text around it."""
    name = draw(names())
    form = draw(st.sampled_from(sorted(NAME_FORMS)))
    sentence_form = draw(st.sampled_from(sorted(SENTENCE_FORMS)))
    around = st.lists(st.sampled_from(AROUND), max_size=4).map("".join)
    if form in ENCODED_FORMS and sentence_form in TWO_LAYERS:
        sentence_form = "base64"  # decoding goes two layers deep (filters.canonical.MAX_DEPTH)
    if form in NON_ASCII_FORMS and sentence_form == "rot13":
        sentence_form = "reversed"  # look-alikes inside ROT13: not in the supported set
    written = NAME_FORMS[form](name, lambda o: draw(st.sampled_from(o)))
    sentence = _glue(draw(around), written, draw(around))
    text = draw(around) + " " + SENTENCE_FORMS[sentence_form](sentence) + " " + draw(around)
    return name, text, f"{form}/{sentence_form}"


def _guard(name: str, embedding_threshold: float | None = None) -> OutputFilter:
    targets = [ForgetTargetConfig(id="t", name=name)]
    index = ForgetIndex.build(collect_items(targets, base_dir=None), build_embedder(EMBEDDER))
    return OutputFilter(index, build_embedder(EMBEDDER), aliases=AliasTable.from_targets(targets),
                        ngram_n=6, embedding_threshold=embedding_threshold)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.integers(0, 2**32), st.integers(1, 8))
def test_an_obfuscated_name_never_reaches_the_client(
    case: tuple[str, str, str], seed: int, longest: int
) -> None:
    _check_stream(_guard(case[0]), case, seed, longest)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.integers(0, 2**32), st.integers(1, 8))
def test_with_sentence_embeddings_on_too(case: tuple[str, str, str], seed: int,
                                         longest: int) -> None:
    """The release rule then also stops at the sentence units judged so far."""
    _check_stream(_guard(case[0], embedding_threshold=0.75), case, seed, longest)


def _check_stream(guard: OutputFilter, case: tuple[str, str, str], seed: int,
                  longest: int) -> None:
    name, text, how = case
    table = AliasTable([("t", name)])
    non_stream = guard.check_output([], text, final=True)
    assert non_stream.is_block, (how, text)
    streamed = stream_text([guard], random_pieces(text, seed, longest=longest))
    assert streamed.blocked == non_stream.is_block, (how, text)
    assert text.startswith(streamed.released)
    assert find_in_views(table, streamed.released) is None, (how, text, streamed.released)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(AROUND), min_size=1, max_size=12).map("".join),
       st.integers(0, 2**32), st.integers(1, 8))
def test_text_without_the_name_streams_whole_and_equals_the_non_stream_answer(
    text: str, seed: int, longest: int
) -> None:
    guard = _guard("Zorblax Quintavius")
    assert not guard.check_output([], text, final=True).is_block
    streamed = stream_text([guard], random_pieces(text, seed, longest=longest))
    assert (streamed.released, streamed.blocked) == (text, False)


@pytest.mark.parametrize("form", sorted(NAME_FORMS))
def test_every_name_form_is_blocked_on_input_too(form: str) -> None:
    guard = AliasGuard(AliasTable([("t", "Zorblax Quintavius")]))
    written = NAME_FORMS[form]("Zorblax Quintavius", lambda options: options[-1])
    for sentence_form, encode in SENTENCE_FORMS.items():
        if form in ENCODED_FORMS and sentence_form in TWO_LAYERS:
            continue  # three layers: deeper than decoding goes
        if form in NON_ASCII_FORMS and sentence_form == "rot13":
            continue
        question = encode(f"Who is {written}?")
        verdict = guard.check_input([{"role": "user", "content": question}])
        assert verdict.is_block, (form, sentence_form, question)
        assert verdict.match is not None and verdict.match.transform
