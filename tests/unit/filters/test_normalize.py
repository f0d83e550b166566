from __future__ import annotations

import pytest

from filters.normalize import TextFeed, deconfuse, fold, normalize, settled_end, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("J. K. Rowling", "jk rowling"),
        ("JK Rowling", "jk rowling"),
        ("j.k.rowling", "jk rowling"),
        ("J.K. ROWLING", "jk rowling"),
        ("Gabriel García Márquez", "gabriel garcia marquez"),
        ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
        ("H5iao Yun-Hw4", "hsiao yun hwa"),
        ("R0wl1ng", "rowling"),
        ("J@ne Au$ten", "jane austen"),
        ("born in 1991", "born in 1991"),
        ("  lots   of\tspace\n", "lots of space"),
        ("Hsiao Yun-Hwa's father", "hsiao yun hwa s father"),
        ("@rowling says hi", "rowling says hi"),
        ("$5 and 7 7s", "5 and 7 ts"),
        ("Straße", "strasse"),
    ],
)
def test_normalize_table(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_digit_one_keeps_both_readings() -> None:
    (token,) = tokenize("B1ll")
    assert token.readings() == ("bill", "blll", "bvll")  # and 1 as ROT13's "v" (= "i")
    (number,) = tokenize("1991")
    assert number.readings() == ("1991",)


def test_fold_strips_accents_and_case() -> None:
    assert fold("ÉCOLE Noël") == "ecole noel"


@pytest.mark.parametrize(
    ("text", "end"),
    [("", 0), ("abc", 0), ("abc ", 4), ("abc de", 4), ("j.k", 2), ("a b.c", 4), ("Ke$ha", 0)],
)
def test_settled_end(text: str, end: int) -> None:
    assert settled_end(text) == end


def test_text_feed_matches_tokenize_on_every_split() -> None:
    text = "Dr. J. K. Rowling, née Ann-Marie, wrote 7 b00ks in 1997 (J.K.R.)"
    expected = [t.text for t in tokenize(text)]
    for cut in range(len(text) + 1):
        feed = TextFeed()
        got = [t.text for t in feed.advance(text[:cut])]
        got += [t.text for t in feed.advance(text, final=True)]
        assert got == expected, cut


def test_text_feed_rejects_non_extensions() -> None:
    feed = TextFeed()
    feed.advance("hello there")
    with pytest.raises(ValueError, match="extends"):
        feed.advance("goodbye")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rоwling", "Rowling"),  # Cyrillic о
        ("JΚ Rowlіng", "JK Rowling"),  # Greek Κ, Cyrillic і
        ("Кто такой Пушкин", "Кто такой Пушкин"),  # all-Cyrillic words stay as they are
        ("naïve café", "naïve café"),
    ],
)
def test_deconfuse_maps_look_alikes_inside_latin_words(text: str, expected: str) -> None:
    assert deconfuse(text) == expected


def test_homoglyph_alias_still_matches() -> None:
    assert normalize("Who is J. K. Rоwlіng?") == normalize("Who is J. K. Rowling?")


@pytest.mark.parametrize(
    "disguised",
    [
        "Zorblax",
        "Zorblаx",  # Cyrillic а
        "Zorblɑx",  # Latin alpha
        "Zorbl\u0251x",
        "Zօrblax",  # Armenian օ
        "ᴢᴏʀʙʟᴀx",  # small capitals
        "𝐙𝐨𝐫𝐛𝐥𝐚𝐱",  # mathematical bold
        "Ｚｏｒｂｌａｘ",  # fullwidth
    ],
)
def test_confusables_table_folds_look_alikes_of_any_script(disguised: str) -> None:
    assert normalize(disguised) == "zorblax"


def test_all_look_alike_words_fold_but_other_scripts_stay() -> None:
    assert normalize("Ј. К. Rowling") == "jk rowling"  # Cyrillic Ј and К alone
    assert normalize("dotless ı") == "dotless i"
    assert normalize("Пушкин") == "пушкин"
