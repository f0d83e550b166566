"""The baseline trainer data parallel: ``torchrun`` with 2 CPU processes (gloo) against one process.

Both run the real command line (``python -m benchmarks.baselines``; in one process through its
``run_methods``) on the same tiny Gemma 3 checkpoint, seed and data: 5 forget and 5 retain QA
pairs in batches of 3, so ranks get uneven shards (2 + 1 rows, then 1 + 1) with different
token counts, where a mean of per-rank means would be wrong. Every registered method runs 3
steps; GA accumulates 2 micro-batches (DDP ``no_sync``), NPO masks samples past an NLL ceiling,
GradDiff saves a checkpoint (from rank 0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.baselines import METHODS, BaselineConfigError, UnlearnResult, collate
from benchmarks.baselines.cli import STATE_FILE, SUMMARY_FILE, read_items, run_methods
from benchmarks.baselines.distributed import (
    DataParallel,
    check_shardable,
    setup_data_parallel,
    shard_batch,
)
from benchmarks.baselines.trainer import LOSS_LOG
from benchmarks.processes import REPO, free_port
from proxy.backends.hf_loader import load_causal_lm
from tests.baseline_models import FORGET, RETAIN, save_tiny_checkpoint

FORGET_ITEMS = [*FORGET, ("When did Quenna Vix marry?", "She married a lighthouse keeper.")]
RETAIN_ITEMS = [*RETAIN, ("What is water made of?", "Water is hydrogen and oxygen.")]
SHARED = {"max_steps": 3, "batch_size": 3, "lr": 1e-3, "max_length": 64, "weight_decay": 0.0}
NPO_CEILING = 0.05  # between the memorised forget samples' NLLs: some are masked, some not
RUNS: dict[str, dict[str, Any]] = {
    "ga": {"grad_accum_steps": 2},
    "grad_diff": {"save_every": 3},
    "npo": {"forget_nll_ceiling": NPO_CEILING},
    "simnpo": {},
    "idk_dpo": {},
    "rmu": {"layer": 1, "alpha": 10.0},
}
RTOL = 1e-5
LOSS_ATOL = 1e-7
WEIGHT_ATOL = 1e-5
TIMEOUT_S = 300


def _write_jsonl(path: Path, items: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items))
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """As ``torch_one_thread``, for the module's fixtures: a tiny model on a busy 2-core machine
    trains several times faster on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    return {
        "model": save_tiny_checkpoint(root / "model", FORGET_ITEMS + RETAIN_ITEMS),
        "forget": _write_jsonl(root / "forget.jsonl", FORGET_ITEMS),
        "retain": _write_jsonl(root / "retain.jsonl", RETAIN_ITEMS),
        "root": root,
    }


@pytest.fixture(scope="module")
def single(inputs: dict[str, Path], one_thread: None) -> tuple[Path, list[UnlearnResult]]:
    """One process, in this one: the command line's ``run_methods`` on the saved checkpoint."""
    model, tokenizer, _ = load_causal_lm(str(inputs["model"]), device="cpu")
    out = inputs["root"] / "single"
    results = run_methods(
        model, tokenizer, [(m, {**SHARED, **c}) for m, c in RUNS.items()],
        read_items(inputs["forget"]), read_items(inputs["retain"]),
        output_dir=out, device="cpu", progress=False,
    )
    return out, results


@pytest.fixture(scope="module")
def distributed(inputs: dict[str, Path]) -> Path:
    """``torchrun --nproc_per_node 2 -m benchmarks.baselines`` on CPU (gloo) over loopback."""
    out = inputs["root"] / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "benchmarks.baselines", "--model", str(inputs["model"]),
        "--forget", str(inputs["forget"]), "--retain", str(inputs["retain"]),
        "--config", json.dumps(SHARED), "--output-dir", str(out), "--device", "cpu",
        "--no-progress",
    ] + [f"--method={m}={json.dumps(c)}" for m, c in RUNS.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # its own session, so a hung run is killed with both workers, not just the launcher
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    assert process.returncode == 0, f"torchrun exited {process.returncode}:\n{output[-6000:]}"
    return out


def _log(directory: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (directory / LOSS_LOG).read_text().splitlines()]


@pytest.mark.slow
def test_every_method_runs_in_both(single: tuple[Path, list[UnlearnResult]]) -> None:
    assert sorted(RUNS) == sorted(METHODS.names())
    assert [r.world_size for r in single[1]] == [1] * len(RUNS)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RUNS))
def test_per_step_losses_match_one_process(
    method: str, single: tuple[Path, list[UnlearnResult]], distributed: Path
) -> None:
    one, two = _log(single[0] / method), _log(distributed / method)
    assert [e["step"] for e in two] == [1, 2, 3]
    assert set(one[0]) == set(two[0])
    for a, b in zip(one, two, strict=True):
        for key in a.keys() - {"step_time_s"}:
            expected = pytest.approx(a[key], rel=RTOL, abs=LOSS_ATOL)
            assert b[key] == expected, (method, a["step"], key)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RUNS))
def test_final_weights_match_one_process(
    method: str, single: tuple[Path, list[UnlearnResult]], distributed: Path
) -> None:
    result = next(r for r in single[1] if r.method == method)
    saved = torch.load(distributed / method / STATE_FILE, weights_only=True)
    assert saved.keys() == result.final_state.keys()
    moved = max((result.final_state[k] - result.original_state[k]).abs().max() for k in saved)
    assert moved > 100 * WEIGHT_ATOL  # the tolerance is under 1 % of the update
    for name, value in saved.items():
        torch.testing.assert_close(value, result.final_state[name], rtol=RTOL, atol=WEIGHT_ATOL)
    for path in (distributed / method).glob("checkpoint-*.pt"):  # step 3 = the last
        checkpoint = torch.load(path, weights_only=True)
        assert all(torch.equal(checkpoint[k], saved[k]) for k in saved)


@pytest.mark.slow
def test_rank_zero_writes_one_folder_a_method(distributed: Path) -> None:
    assert sorted(p.name for p in distributed.iterdir()) == sorted(RUNS)
    for method in RUNS:
        files = sorted(p.name for p in (distributed / method).iterdir())
        checkpoints = ["checkpoint-000003.pt"] * (method == "grad_diff")
        assert files == sorted([LOSS_LOG, STATE_FILE, SUMMARY_FILE, *checkpoints])
        summary = json.loads((distributed / method / SUMMARY_FILE).read_text())
        assert (summary["method"], summary["world_size"], summary["device"]) == (method, 2, "cpu")
        assert summary["config"]["seed"] == 0 and summary["final"]["step"] == 3


@pytest.mark.slow
def test_the_ceiling_and_accumulation_are_exercised(
    single: tuple[Path, list[UnlearnResult]],
) -> None:
    fractions = [e["active_fraction"] for e in _log(single[0] / "npo")]
    assert any(0 < f < 1 for f in fractions), fractions
    assert next(r for r in single[1] if r.method == "ga").config.grad_accum_steps == 2


def test_shards_are_contiguous_uneven_slices_of_every_tensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    examples = [
        {"input_ids": torch.arange(n + 2), "labels": torch.arange(n + 2),
         "alternate": {"input_ids": torch.arange(2), "labels": torch.arange(2)}}
        for n in range(3)
    ]
    batch = {**collate(examples), "index": torch.tensor([4, 0, 2])}
    parallel = setup_data_parallel(torch.device("cpu"))[0]
    assert parallel is None and shard_batch(batch, parallel) is batch
    first, second = (shard_batch(batch, DataParallel(r, 2, r)) for r in (0, 1))
    assert first["index"].tolist() == [4] and second["index"].tolist() == [0, 2]
    assert torch.equal(torch.cat([first["input_ids"], second["input_ids"]]), batch["input_ids"])
    assert len(second["alternate"]["labels"]) == 2 and second["attention_mask"].shape[1] == 4


@pytest.mark.parametrize(
    ("n_examples", "batch_size", "world_size", "ok"),
    [(5, 3, 2, True), (4, 2, 2, True), (4, 3, 2, False), (1, 4, 2, False), (8, 1, 2, False),
     (6, 4, 2, True), (7, 4, 4, False)],
)
def test_batches_too_small_for_every_rank_are_refused(
    n_examples: int, batch_size: int, world_size: int, ok: bool
) -> None:
    if ok:
        check_shardable(n_examples, batch_size, world_size, "forget")
    else:
        with pytest.raises(BaselineConfigError, match="cannot give each of"):
            check_shardable(n_examples, batch_size, world_size, "forget")
