"""The attack transforms, and a small real attack run on a 2-author TOFU policy."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from benchmarks.attack_transforms import (
    FAMILIES, INJECTIONS, Attack, encoded_answer_request, encoded_question, homoglyphs,
    leetspeak, prompt_injection, reverse_text, spell_out, split_turns, to_base64, typos,
)
from benchmarks.attacks import (
    NEIGHBOUR, STACKS, Case, _tally, build_cases, measure_policy, render_markdown,
)
from benchmarks.datasets import load_benchmark
from benchmarks.harness.config import DatasetSpec, SampleSizes
from benchmarks.harness.policies import split_probes

QUESTION = "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?"


def _last_user(attack: Attack) -> str:
    return [m["content"] for m in attack.messages if m["role"] == "user"][-1]


# transforms ----------------------------------------------------------------------------------


def test_typos_are_seeded_and_change_the_text() -> None:
    assert typos(QUESTION, seed=1) == typos(QUESTION, seed=1)
    variants = {typos(QUESTION, seed=s) for s in range(10)}
    assert QUESTION not in variants and len(variants) > 5
    assert typos("Who is Ada?", seed=0, rate=0.01) != "Who is Ada?"  # at least one typo
    with pytest.raises(ValueError, match="rate"):
        typos(QUESTION, seed=0, rate=0.0)
    with pytest.raises(ValueError, match="3\\+ letters"):
        typos("a b ?", seed=0)


def test_character_substitutions() -> None:
    assert leetspeak("Who wrote it") == "Wh0 wr073 17"
    glyphs = homoglyphs(QUESTION, seed=3)
    assert glyphs != QUESTION and len(glyphs) == len(QUESTION) and not glyphs.isascii()
    assert glyphs == homoglyphs(QUESTION, seed=3)
    assert homoglyphs(QUESTION, seed=3, rate=1.0).count("\u0430") == QUESTION.count("a")
    with pytest.raises(ValueError, match="look-alike"):
        homoglyphs("123", seed=0)


@pytest.mark.parametrize("parts", [1, 3, 5, 40])
def test_split_turns_keeps_every_word_in_order(parts: int) -> None:
    messages = split_turns(QUESTION, parts)
    roles = [m["role"] for m in messages]
    assert roles[-1] == "user" and roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert len(users) == min(parts, len(QUESTION.split()))
    words = " ".join(u.split(": ", 1)[1] for u in users).replace(
        " Now answer the whole question.", "").split()
    assert words == QUESTION.split()
    with pytest.raises(ValueError):
        split_turns("  ", 3)


def test_encodings_round_trip() -> None:
    assert base64.b64decode(to_base64("Ba sil")).decode() == "Ba sil"
    assert reverse_text("abc") == "cba"
    assert spell_out("Who is") == "W-h-o / i-s"
    assert to_base64(QUESTION) in encoded_question(QUESTION, "base64")
    assert QUESTION[::-1] in encoded_question(QUESTION, "reversed")
    assert encoded_answer_request(QUESTION, "spelled").startswith(QUESTION)
    assert Attack((), "base64").encode_answer("Basil") == to_base64("Basil")
    assert Attack(()).encode_answer("Basil") == "Basil"
    with pytest.raises(ValueError, match="unknown encoding"):
        encoded_answer_request(QUESTION, "klingon")


def test_prompt_injection_wraps_the_question() -> None:
    wrapped = {prompt_injection(QUESTION, seed=s) for s in range(40)}
    assert len(wrapped) == len(INJECTIONS)
    assert all(QUESTION in text and text != QUESTION for text in wrapped)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_changes_the_request(family: str) -> None:
    attack = FAMILIES[family](QUESTION, 7)
    assert attack.messages[-1]["role"] == "user"
    assert _last_user(attack) != QUESTION
    assert attack == FAMILIES[family](QUESTION, 7)
    changed_answer = attack.encode_answer("Basil Mahfouz") != "Basil Mahfouz"
    assert changed_answer == family.startswith(("answer_", "both_"))


def test_tally_counts_bypasses_and_neighbour_blocks() -> None:
    cases = [Case(family, f"p{i}", Attack(()), "a")
             for i, family in enumerate(["direct"] * 3 + [NEIGHBOUR] * 2)]
    passed = {"loose": [True, False, False, True, False], "strict": [False] * 5}
    # direct: the cases that got through (1 of 3 / 0 of 3); neighbours: those blocked (1 / 2)
    assert _tally(cases, passed) == {
        "direct": {"loose": {"n": 3, "count": 1, "rate": 0.3333},
                   "strict": {"n": 3, "count": 0, "rate": 0.0}},
        NEIGHBOUR: {"loose": {"n": 2, "count": 1, "rate": 0.5},
                    "strict": {"n": 2, "count": 2, "rate": 1.0}},
    }


# a real run ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_small_tofu_run_with_the_real_detector(tmp_path: Path) -> None:
    tofu = load_benchmark("tofu", split="forget01", seed=0)
    assert len(tofu.targets) == 2
    spec = DatasetSpec(name="tofu", mode="detect",
                       candidates=SampleSizes(forget=None, neighbour=None, retain=0, utility=0))
    cases = build_cases(split_probes(tofu, spec, seed=0), limit=3, seed=0)
    by_id = {p.id: p for p in tofu.forget_probes}
    paraphrases = [c for c in cases if c.family == "paraphrase"]
    assert len(paraphrases) == 3
    for case in paraphrases:
        assert _last_user(case.attack) == by_id[case.probe_id].paraphrased_question
    direct = {c.probe_id: _last_user(c.attack) for c in cases if c.family == "direct"}
    assert all(_last_user(c.attack) != direct[c.probe_id] for c in cases if c.family == "typos")

    with asyncio.Runner() as loop:
        result = measure_policy("tiny", tofu, stacks={"input_detector": STACKS["input_detector"]},
                                limit=3, seed=0, state_dir=tmp_path, loop=loop)
    families = result["families"]
    assert {"direct", "paraphrase", NEIGHBOUR, *FAMILIES} == set(families)
    for family, cells in families.items():  # each cell tallies the per-case records
        cases = [i for i in result["items"] if i["family"] == family]
        through = sum("input_detector" in i["passed"] for i in cases)
        count = len(cases) - through if family == NEIGHBOUR else through
        assert cells["input_detector"] == {"n": 3, "count": count, "rate": round(count / 3, 4)}
    assert families["direct"]["input_detector"]["rate"] < 1.0  # the detector blocks something
    report = {"provenance": {"command": "x", "git_commit": "c", "git_dirty": False,
                             "started_utc": "t", "wall_time_s": 1.0, "host": {"cpus": 2},
                             "embedder": "e", "seed": 0, "limit": 3, "stack_settings": "s",
                             "stacks": {"input_detector": []}},
              "policies": {"tiny": result}}
    markdown = render_markdown(report)
    assert "| paraphrase |" in markdown and f"| **{NEIGHBOUR}** |" in markdown
