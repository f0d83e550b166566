"""The baselines' command line: its data files and ``--method`` arguments (the runs themselves
are in ``test_distributed_baselines.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.baselines import BaselineDataError
from benchmarks.baselines.cli import build_parser, method_spec, read_items


def test_jsonl_items_are_passages_or_question_answer_pairs(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = ['"A passage."', '{"text": "Another."}', '{"question": "Q?", "answer": "A."}',
             '["Q2?", "A2."]', ""]
    path.write_text("\n".join(lines) + "\n")
    assert read_items(path) == ["A passage.", "Another.", ("Q?", "A."), ("Q2?", "A2.")]


@pytest.mark.parametrize(
    "line", ['{"question": "Q?"}', "[1, 2]", "42", '["only one"]', "not json"]
)
def test_a_bad_line_is_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('"fine"\n' + line + "\n")
    with pytest.raises(BaselineDataError, match=r"items\.jsonl:2: expected a passage"):
        read_items(path)


def test_method_arguments_carry_their_own_config() -> None:
    assert method_spec("ga") == ("ga", {})
    assert method_spec('npo={"beta": 0.2, "max_steps": 3}') == (
        "npo", {"beta": 0.2, "max_steps": 3}
    )
    args = build_parser().parse_args([
        "--forget", "f.jsonl", "--output-dir", "out", "--method", "ga",
        "--method", 'rmu={"layer": 1}', "--config", json.dumps({"max_steps": 2}),
    ])
    assert args.method == [("ga", {}), ("rmu", {"layer": 1})]
    assert args.config == {"max_steps": 2} and args.device == "auto"


def test_a_malformed_method_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--forget", "f", "--output-dir", "o", "--method", "npo={beta"])
    assert exit_info.value.code == 2
    assert "--method" in capsys.readouterr().err
