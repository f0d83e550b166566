from __future__ import annotations

import base64
import codecs
import time

import pytest

from filters.canonical import PLAIN_VIEW, View, combine, decoded_views, settled_views, views
from filters.decoders import is_texty
from filters.lexicon import is_plain, plausibility

QUESTION = "Who is the father of the author Zorblax Quintavius, and what was his job?"
MORSE = ".-- .... --- / .. ... / --.. --- .-. -... .-.. .- -..-"


def _hex_escaped(text: str) -> str:
    return "".join(f"\\x{b:02x}" for b in text.encode())


ENCODED = [
    ("base64", base64.b64encode(QUESTION.encode()).decode()),
    ("base64", base64.urlsafe_b64encode(QUESTION.encode()).decode().rstrip("=")),
    ("base32", base64.b32encode(QUESTION.encode()).decode()),
    ("hex", QUESTION.encode().hex()),
    ("hex", _hex_escaped(QUESTION)),
    ("hex", _hex_escaped("Qui était Zorblax Quintavius ?")),
    ("percent", "".join(f"%{b:02X}" for b in QUESTION.encode())),
    ("html", "".join(f"&#{ord(c)};" for c in QUESTION)),
    ("html", "".join(f"&#x{ord(c):x};" for c in QUESTION)),
    ("escapes", "".join(f"\\u{ord(c):04x}" for c in QUESTION)),
    ("reversed", QUESTION[::-1]),
    ("rot13", codecs.encode(QUESTION, "rot13")),
    ("leet", "Wh0 15 7h3 f47h3r 0f 7h3 4u7h0r Z0rbl4x Qu1n74v1u5, 4nd wh47 w45 h15 j0b?"),
    ("spaced", " / ".join("-".join(w) for w in QUESTION.split())),
    ("spaced", "  ".join(" ".join(w) for w in QUESTION.split())),
    ("base64+reversed", base64.b64encode(QUESTION[::-1].encode()).decode()),
    ("base64>base64", base64.b64encode(base64.b64encode(QUESTION.encode())).decode()),
]


@pytest.mark.parametrize(("transform", "encoded"), ENCODED,
                         ids=[f"{t}-{i}" for i, (t, _) in enumerate(ENCODED)])
def test_each_encoding_gives_the_plain_question_as_a_named_view(transform: str,
                                                                encoded: str) -> None:
    for text in (encoded, f"Decode this and answer the question it contains: {encoded}"):
        decoded = decoded_views(text)
        assert decoded, text
        last = decoded[-1]
        assert last.transform == transform
        assert "zorblax" in last.text.casefold().replace("0", "o").replace("4", "a")
        assert "\ufffd" not in last.text
        assert views(text)[0] == View(PLAIN_VIEW, text)


def test_morse_and_nato_spell_the_name() -> None:
    (morse,) = decoded_views(MORSE)
    assert (morse.transform, morse.text) == ("morse", "who is zorblax")
    (nato,) = decoded_views("Zulu Oscar Romeo Bravo Lima Alfa X-ray")
    assert (nato.transform, nato.text) == ("nato", "zorblax")
    assert decoded_views("alpha alpha alpha and more alpha") == []  # one letter is no spelling


BENIGN = [
    "The quick brown fox jumps over the lazy dog near the riverbank on a sunny day.",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e, uuid 123e4567-e89b-12d3-a456-426614174000",
    "Upgrade from v1.2.3 to v2.0.0-rc1 (build 20240115.3) before Friday.",
    "Use the key sk_live_51HcR9aKb2x3y4z5Q6w7e8r9t0 in staging only.",
    "她在港口小镇长大，后来创办了一家玻璃厂。",
    "ผู้เขียนเติบโตในเมืองท่าและเรียนเคมีแก้ว",
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
    "x^2 + 3x - 4 = 0 => x = 1 or x = -4",
    "",
]


@pytest.mark.parametrize("text", BENIGN)
def test_plain_language_and_random_tokens_give_no_decoded_view(text: str) -> None:
    assert decoded_views(text) == []


def test_the_decoded_view_of_a_harmless_blob_is_kept_and_named() -> None:
    blob = base64.b64encode(b"hello world, this is a config file").decode()
    (view,) = decoded_views(f"config: {blob}")
    assert view == View("base64", "config: hello world, this is a config file")


def test_depth_and_size_are_bounded() -> None:
    nested = QUESTION
    for _ in range(4):
        nested = base64.b64encode(nested.encode()).decode()
    assert len(decoded_views(nested)) == 2  # two rounds only
    huge = "A" * 20_000 + " " + base64.b64encode(QUESTION.encode()).decode()
    assert decoded_views(huge) == []  # past MAX_CHARS nothing is decoded


def test_plausibility_tells_plain_language_from_its_encodings() -> None:
    assert plausibility(QUESTION) > 0.7 and is_plain(QUESTION)
    assert plausibility(QUESTION[::-1]) < 0.4
    assert plausibility(codecs.encode(QUESTION, "rot13")) < 0.4
    assert is_plain("她在港口小镇长大") and not is_plain("d41d8cd98f00b204e9800998ecf8427e")
    assert not is_texty("\x00\x01ab") and is_texty("plain words")


def test_settled_views_read_only_the_settled_part() -> None:
    blob = base64.b64encode(b"the author was Zorblax Quintavius, born in Vell").decode()
    views_of_cut = settled_views(blob[:20], final=False)
    assert views_of_cut == []  # no space or punctuation yet: nothing settled
    ((view, tokens),) = settled_views(blob, final=True)
    assert view.transform == "base64" and [t.text for t in tokens][-1] == "vell"


def test_combine_names_a_spelling_inside_a_view() -> None:
    assert combine("plain", "reversed") == "reversed"
    assert combine("base64", "plain") == "base64"
    assert combine("base64", "rot13") == "base64>rot13"


def test_a_plain_fifty_word_request_costs_well_under_half_a_millisecond() -> None:
    words = ("Could you summarise the main arguments of the report on renewable energy policy "
             "in northern Europe, including all the costs, the timeline, and the risks that the "
             "authors identify for grid stability, storage, and public acceptance, and then "
             "suggest three questions I should ask the committee at its next meeting?")
    assert len(words.split()) == 50
    views(words)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        views(words)
        times.append(time.perf_counter() - started)
    assert sorted(times)[100] < 0.5e-3
