"""Loaders on the real shared data, plus error paths on broken copies in tmp_path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmarks.data_dir import DATA_DIR_ENV, resolve_data_dir, sha256_file
from benchmarks.datasets import DATASETS, Benchmark, Probe, load_benchmark
from benchmarks.datasets.base import sample
from benchmarks.datasets.muse import load_muse
from benchmarks.datasets.rwku import (
    ANSWER_PREFIX, fill_in_blank_prompt, load_rwku, probe_prompt, question_answer_prompt,
)
from benchmarks.datasets.tofu import author_name, load_tofu
from benchmarks.datasets.wmdp import load_wmdp
from benchmarks.errors import DatasetError
from proxy.core.registry import RegistryError

DATA = resolve_data_dir()

# Read off the first QA pair of each block of 20 in tofu/forget10.json.
FORGET10_AUTHORS = [
    "Hsiao Yun-Hwa", "Carmen Montenegro", "Elvin Mammadov", "Rajeev Majumdar",
    "Jad Ambrose Al-Shamary", "Adib Jarrah", "Ji-Yeon Park", "Behrouz Rohani", "Wei-Jun Chen",
    "Tae-ho Park", "Hina Ameen", "Xin Lee Williams", "Moshe Ben-David", "Kalkidan Abera",
    "Takashi Nakamura", "Raven Marais", "Aysha Al-Hashim", "Edward Patrick Sullivan",
    "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov",
]


def _sha256sums(folder: str) -> dict[str, str]:
    lines = (DATA / folder / "SHA256SUMS").read_text().splitlines()
    return {f"{folder}/{name.lstrip('*')}": digest
            for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def _check_hashes(bench: Benchmark, folder: str) -> None:
    expected = _sha256sums(folder)
    assert bench.files and all(expected[path] == digest for path, digest in bench.files.items())


# data_dir ---------------------------------------------------------------------------------

def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(DATA) == DATA
    monkeypatch.delenv(DATA_DIR_ENV)
    assert (resolve_data_dir() / "tofu" / "full.json").is_file()


def test_resolve_data_dir_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        resolve_data_dir(tmp_path / "nope")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=DATA_DIR_ENV):
        resolve_data_dir()


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"unlearn")
    assert sha256_file(path) == hashlib.sha256(b"unlearn").hexdigest()
    with pytest.raises(DatasetError, match="cannot read"):
        sha256_file(tmp_path / "missing.bin")


# TOFU -------------------------------------------------------------------------------------

def test_tofu_forget10_authors_and_counts() -> None:
    bench = load_tofu(DATA, split="forget10")
    assert [t.name for t in bench.targets] == FORGET10_AUTHORS
    assert bench.targets[0].id == "hsiao-yun-hwa"
    assert all(len(t.questions) == len(t.answers) == 20 for t in bench.targets)
    assert (len(bench.forget_probes), len(bench.retain_probes), len(bench.neighbour_probes)) == (
        400, 3600, 217)
    assert sum(1 for p in bench.retain_probes if p.perturbed_answers) == 400
    _check_hashes(bench, "tofu")


def test_tofu_probe_fields() -> None:
    bench = load_tofu(DATA, split="forget10")
    first = bench.forget_probes[0]
    assert first.target_id == "hsiao-yun-hwa" and first.kind == "forget"
    assert "Hsiao Yun-Hwa" in first.answer and first.paraphrased_question
    assert all(len(p.perturbed_answers) == 5 and p.paraphrased_answer for p in bench.forget_probes)
    assert {p.target_id for p in bench.forget_probes[380:]} == {"nikolai-abilov"}
    for probe in bench.neighbour_probes:
        assert probe.is_mcq and len(probe.choices) == 4 and len(probe.perturbed_answers) == 3
        assert probe.choices[probe.correct_index or 0] == probe.answer
    assert {p.type for p in bench.neighbour_probes} == {"real_authors", "world_facts"}


@pytest.mark.parametrize(("split", "names", "n_retain"), [
    ("forget01", ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"], 3960),
    ("forget05", FORGET10_AUTHORS[10:], 3800),
])
def test_tofu_smaller_splits(split: str, names: list[str], n_retain: int) -> None:
    bench = load_tofu(DATA, split=split)
    assert [t.name for t in bench.targets] == names
    assert len(bench.forget_probes) == 20 * len(names)
    assert len(bench.retain_probes) == n_retain


def test_author_name_rules() -> None:
    questions = ["Where was Sara van Dyke born?", "What does Sara van Dyke's father do?",
                 "Which genre does Sara write?"]
    answers = ["Sara van Dyke was born in Cape Town.", "Her father is a soldier.",
               "Sara van Dyke writes about \"Small Seeds\"."]
    assert author_name(questions, answers) == ("Sara van Dyke", ())
    assert author_name(["What is the genre?"] * 3, ["Urban fiction."] * 3) == (None, ())


def test_tofu_limit_is_deterministic() -> None:
    first = load_tofu(DATA, split="forget05", limit=25, seed=1)
    again = load_tofu(DATA, split="forget05", limit=25, seed=1)
    other = load_tofu(DATA, split="forget05", limit=25, seed=2)
    ids = [p.id for p in first.forget_probes]
    assert ids == [p.id for p in again.forget_probes] != [p.id for p in other.forget_probes]
    assert len(ids) == 25 and ids == sorted(ids, key=lambda i: int(i.rsplit("/", 1)[1]))
    assert len(first.targets) == 10 and len(first.retain_probes) == 25


def test_tofu_unknown_split() -> None:
    with pytest.raises(DatasetError, match="forget10"):
        load_tofu(DATA, split="forget20")


# RWKU -------------------------------------------------------------------------------------

def test_rwku_all_targets_counts() -> None:
    bench = load_rwku(DATA, n_targets=200)
    assert len(bench.targets) == 200
    assert len(bench.forget_probes) == 3268 + 2879 + 6984
    assert len(bench.neighbour_probes) == 5846 + 5533
    assert len(bench.utility_probes) == 100 * 171
    assert sum(len(t.documents) for t in bench.targets) == 6198
    _check_hashes(bench, "rwku")


def test_rwku_default_targets_and_fields() -> None:
    bench = load_rwku(DATA)
    king = bench.targets[0]
    assert len(bench.targets) == 10 and king.id == "1_Stephen_King"
    assert king.name == "Stephen King" and king.description.startswith("Please forget Stephen")
    assert len(king.documents) == 55 and not king.questions
    assert {p.level for p in bench.forget_probes} == {"1", "2", "3"}
    assert "prefix injection" in {p.type for p in bench.forget_probes if p.level == "3"}
    neighbour = bench.neighbour_probes[0]
    assert neighbour.subject == "The Shawshank Redemption" and neighbour.target_id == king.id
    mmlu = bench.utility_probes[0]
    assert len(mmlu.choices) == 4 and mmlu.choices[mmlu.correct_index or 0] == mmlu.answer
    forget_texts = {d for t in bench.targets for d in t.documents}
    assert bench.retain_documents and not forget_texts & set(bench.retain_documents)


def test_rwku_selected_targets_and_levels() -> None:
    bench = load_rwku(DATA, target_ids=[150, 3], forget_levels=[2], neighbour_levels=[1])
    # forget_target.jsonl: id 150 is Kim Basinger, id 3 Bruce Lee; the requested order is kept
    assert [(t.id, t.name) for t in bench.targets] == [("150_Kim_Basinger", "Kim Basinger"),
                                                      ("3_Bruce_Lee", "Bruce Lee")]
    assert {p.target_id for p in bench.forget_probes + bench.neighbour_probes} == {
        "150_Kim_Basinger", "3_Bruce_Lee"}
    assert {p.level for p in bench.forget_probes} == {"2"}
    assert {p.level for p in bench.neighbour_probes} == {"1"}
    assert len(bench.utility_probes) == 171  # RWKU ships MMLU for targets 1-100 only


@pytest.mark.parametrize("kwargs", [{"target_ids": [0]}, {"target_ids": [201]},
                                    {"forget_levels": [4]}, {"neighbour_levels": [3]},
                                    {"n_targets": 0}])
def test_rwku_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(DatasetError):
        load_rwku(DATA, **kwargs)  # type: ignore[arg-type]


def test_rwku_prompts() -> None:
    assert fill_in_blank_prompt("X is an American ___") == (
        "Please complete the blank in the following question.\nQuestion: X is an American ___\n",
        "Answer:")
    assert question_answer_prompt("Who?") == (
        "Please briefly answer the following question.\nQuestion: Who?\n", ANSWER_PREFIX)
    suffix = Probe(id="p", question="Q?", answer="a", kind="forget", level="3",
                   type="affirmative suffix")
    assert probe_prompt(suffix) == ("Please briefly answer the following question.\nQuestion: Q?",
                                    "")
    cloze = Probe(id="c", question="Q ___", answer="a", kind="forget", level="1")
    assert probe_prompt(cloze) == fill_in_blank_prompt("Q ___")


# WMDP and MUSE ----------------------------------------------------------------------------

def test_wmdp_counts_and_fields() -> None:
    bench = load_wmdp(DATA, subsets=["bio", "chem", "cyber"])
    counts = {t.id: sum(p.target_id == t.id for p in bench.forget_probes) for t in bench.targets}
    assert counts == {"wmdp-bio": 1273, "wmdp-chem": 408, "wmdp-cyber": 1987}
    assert all(p.choices[p.correct_index or 0] == p.answer and len(p.choices) == 4
               for p in bench.forget_probes)
    assert bench.forget_probes[0].correct_index == 0
    _check_hashes(bench, "wmdp")
    assert len(load_wmdp(DATA, limit=5).forget_probes) == 10
    with pytest.raises(DatasetError, match="subset"):
        load_wmdp(DATA, subsets=["physics"])


@pytest.mark.parametrize("corpus", ["news", "books"])
def test_muse_counts(corpus: str) -> None:
    bench = load_muse(DATA, corpus=corpus)
    assert (len(bench.forget_probes), len(bench.retain_probes)) == (100, 100)
    assert len(bench.targets[0].questions) == 10
    assert all(p.answer and p.question for p in bench.forget_probes + bench.retain_probes)
    _check_hashes(bench, "muse")


def test_registry() -> None:
    assert DATASETS.names() == ["muse", "rwku", "tofu", "wmdp"]
    assert load_benchmark("muse", DATA, corpus="books", limit=3).name == "muse-books"
    with pytest.raises(RegistryError, match="tofu"):
        DATASETS.get("tofuu")


# errors -----------------------------------------------------------------------------------

def _write_tofu(tmp_path: Path, name: str, text: str) -> None:
    folder = tmp_path / "tofu"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_missing_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "tofu").mkdir()
    with pytest.raises(DatasetError, match=r"missing data file .*forget01\.json"):
        load_tofu(tmp_path, split="forget01")


def test_bad_jsonl_line_is_reported(tmp_path: Path) -> None:
    good = json.dumps({"question": "q", "answer": "a"})
    _write_tofu(tmp_path, "forget01.json", f"{good}\n{{not json\n")
    with pytest.raises(DatasetError, match=r"forget01\.json line 2: invalid JSON"):
        load_tofu(tmp_path, split="forget01")


def test_missing_field_is_reported(tmp_path: Path) -> None:
    rows = [json.dumps({"question": f"Who is Ann Lee {i}?", "answer": "Ann Lee."})
            for i in range(19)] + [json.dumps({"question": "q"})]
    _write_tofu(tmp_path, "forget01.json", "\n".join(rows))
    with pytest.raises(DatasetError, match=r"line 20: missing field 'answer'"):
        load_tofu(tmp_path, split="forget01")


def test_wrong_shape_json_array(tmp_path: Path) -> None:
    (tmp_path / "muse" / "news" / "knowmem").mkdir(parents=True)
    (tmp_path / "muse" / "news" / "knowmem" / "forget_qa_icl.json").write_text('{"a": 1}')
    with pytest.raises(DatasetError, match="expected a JSON array"):
        load_muse(tmp_path, corpus="news")


def test_sample_validation() -> None:
    assert sample([1, 2, 3], None, seed=0, label="x") == (1, 2, 3)
    assert len(sample(list(range(10)), 0, seed=0, label="x")) == 0
    with pytest.raises(DatasetError, match="limit"):
        sample([1, 2, 3], -1, seed=0, label="x")
