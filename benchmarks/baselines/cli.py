"""The baselines' command line, in one process or data parallel (same numbers within tolerance)::

    python -m benchmarks.baselines --model DIR --forget forget.jsonl --retain retain.jsonl \\
        --method ga --method 'npo={"beta": 0.2}' --config '{"max_steps": 10}' --output-dir runs/b
    torchrun --nproc_per_node 2 -m benchmarks.baselines ...     # or: accelerate launch -m ...

Each JSONL line is a passage (a JSON string or ``{"text": ...}``) or a question/answer pair
(``{"question": ..., "answer": ...}`` or ``[question, answer]``). Every method starts from the
loaded weights and writes, from rank 0 only, ``<output-dir>/<method>/``: ``loss_log.jsonl``,
``unlearned.pt`` (the trained parameters) and ``summary.json`` (config, timing, world size,
model and data hashes, provenance).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from benchmarks.baselines.checkpoints import load_state, save_state
from benchmarks.baselines.data import Item, Tokenizer, qa_pair
from benchmarks.baselines.distributed import current_data_parallel
from benchmarks.baselines.errors import BaselineDataError
from benchmarks.baselines.runner import unlearn
from benchmarks.baselines.trainer import UnlearnResult
from benchmarks.provenance import provenance
from proxy.backends.hf_loader import load_causal_lm
from proxy.core.files import file_sha256

STATE_FILE = "unlearned.pt"
SUMMARY_FILE = "summary.json"


def read_items(path: str | os.PathLike[str]) -> list[Item]:
    """Items of a JSONL file: passages and question/answer pairs (blank lines skipped).

    Raises :class:`BaselineDataError` naming the line of anything else.
    """
    items: list[Item] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                items.append(_item(json.loads(line)))
            except (ValueError, KeyError) as exc:
                raise BaselineDataError(
                    f"{path}:{number}: expected a passage or a question/answer pair ({exc})"
                ) from None
    return items


def _item(value: Any) -> Item:
    if isinstance(value, dict):
        value = value["text"] if "text" in value else [value["question"], value["answer"]]
    return value if isinstance(value, str) else qa_pair(value)


def run_methods(
    model: nn.Module,
    tokenizer: Tokenizer,
    methods: Sequence[tuple[str, Mapping[str, Any]]],
    forget: Sequence[Item],
    retain: Sequence[Item],
    *,
    output_dir: str | os.PathLike[str],
    device: str | None = None,
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> list[UnlearnResult]:
    """Run each ``(method, config)`` from the same weights; rank 0 writes one folder a method.

    The model is restored to its loaded weights after each run.
    """
    results = []
    for name, config in methods:
        out = Path(output_dir) / name
        started = time.time()
        result = unlearn(model, tokenizer, name, forget, retain, config=config, device=device,
                         output_dir=out, progress=progress)
        load_state(model, result.original_state)
        parallel = current_data_parallel()
        if parallel is None or parallel.is_main:
            save_state(result.final_state, out / STATE_FILE)
            _write_summary(out / SUMMARY_FILE, result, started, dict(provenance or {}))
        results.append(result)
    return results


def _write_summary(
    path: Path, result: UnlearnResult, started: float, extra: dict[str, Any]
) -> None:
    summary = provenance(
        started,
        method=result.method,
        config=dataclasses.asdict(result.config),
        steps=result.steps,
        world_size=result.world_size,
        device=result.device,
        dtype=result.dtype,
        train_s=round(result.wall_time_s, 3),
        seconds_per_step=round(result.seconds_per_step, 4),
        trained_parameters=len(result.trained_parameters),
        final=result.loss_log[-1] if result.loss_log else None,
        **extra,
    )
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def method_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME=JSON`` (a ``--method`` argument) -> ``(name, config)``."""
    name, _, config = text.partition("=")
    return name, json.loads(config) if config else {}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.baselines",
        description="Weight-based unlearning baselines; data parallel under torchrun or "
        "accelerate launch.",
    )
    parser.add_argument("--model", help="HF model dir or .gguf (default: the embedded Gemma)")
    parser.add_argument("--forget", required=True, help="JSONL of forget items")
    parser.add_argument("--retain", help="JSONL of retain items")
    parser.add_argument("--method", action="append", type=method_spec, required=True,
                        metavar="NAME[=JSON]",
                        help="a method alias, optionally with config fields of its own; repeat")
    parser.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                        help="config fields shared by every method")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    args = build_parser().parse_args(argv)
    names = [name for name, _ in args.method]
    if len(set(names)) != len(names):
        raise SystemExit(f"each method may be given once, got {names}")
    model, tokenizer, info = load_causal_lm(args.model, device="cpu")
    files = [args.forget] + ([args.retain] if args.retain else [])
    data = {"files": [{"path": str(f), "sha256": file_sha256(f)} for f in files]}
    try:
        run_methods(
            model,
            tokenizer,
            [(name, {**args.config, **config}) for name, config in args.method],
            read_items(args.forget),
            read_items(args.retain) if args.retain else [],
            output_dir=args.output_dir,
            device=args.device,
            progress=not args.no_progress,
            provenance={"model": dataclasses.asdict(info), "data": data},
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
