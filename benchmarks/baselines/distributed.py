"""Data parallelism for the baseline trainer: ``torchrun`` / ``accelerate launch`` and DDP.

Both launchers start one process per rank and set ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup_data_parallel` joins that process group (gloo
on CPU, nccl on CUDA, one GPU per local rank), or reuses one the caller made already.

A step is the single-process step, split by rows. Every rank draws the same global batch from
the same seeded stream and keeps one contiguous slice of its rows (:func:`shard_batch`). The
losses normalise by batch-wide totals (rows, labelled tokens, samples under the NLL ceiling)
that :func:`sum_over_ranks` adds up over the ranks, so a rank's loss is its *share* of the
global loss: a token-mean over the global batch is not the mean of per-rank token means. The
trainer back-propagates ``world_size`` x share and DDP averages the gradients, which gives the
gradient of the global loss: the same update as one process, up to float summation order
(exact only without dropout, as in the models used here). Reference quantities (NPO/IdkDPO
log-probs, RMU's original weights) are computed on every rank from the whole data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from benchmarks.baselines.data import Batch
from benchmarks.baselines.errors import BaselineConfigError

__all__ = [
    "DataParallel",
    "check_shardable",
    "current_data_parallel",
    "setup_data_parallel",
    "shard_batch",
    "shard_parts",
    "sum_over_ranks",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes logs, checkpoints and results."""
        return self.rank == 0


def current_data_parallel() -> DataParallel | None:
    """The run this process belongs to (an initialised group of 2+ ranks), else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def setup_data_parallel(device: torch.device) -> tuple[DataParallel | None, torch.device]:
    """Join the launcher's process group if ``WORLD_SIZE`` > 1; return it and this rank's device.

    On CUDA each local rank takes its own GPU (``cuda:LOCAL_RANK``) unless ``device`` names one.
    One process (no launcher, ``WORLD_SIZE`` 1) gives ``(None, device)``. The group stays up for
    later runs in the process; the launching script destroys it at exit.
    """
    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) < 2:
            return None, device
        if device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    parallel = current_data_parallel()
    if parallel is not None and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", parallel.local_rank)
    return parallel, device


def sum_over_ranks(value: Tensor) -> Tensor:
    """``value`` summed over the data-parallel ranks (detached); ``value`` itself in one process.

    For batch-wide totals (counts) that normalise a loss, so each rank's loss is its share.
    """
    if current_data_parallel() is None:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total


def shard_batch(batch: Batch, parallel: DataParallel | None) -> Batch:
    """This rank's contiguous slice of the rows of one batch (its ``alternate`` too)."""
    if parallel is None:
        return batch
    rows = len(batch["input_ids"])
    bounds = [rows * r // parallel.world_size for r in range(parallel.world_size + 1)]
    start, stop = bounds[parallel.rank], bounds[parallel.rank + 1]
    return {
        key: shard_batch(value, parallel) if isinstance(value, dict) else value[start:stop]
        for key, value in batch.items()
    }


def shard_parts(
    parts: dict[str, Batch | None], parallel: DataParallel | None
) -> dict[str, Batch | None]:
    """:func:`shard_batch` of each part of a ``{"forget", "retain"}`` micro-batch."""
    return {
        name: None if part is None else shard_batch(part, parallel)
        for name, part in parts.items()
    }


def check_shardable(n_examples: int, batch_size: int, world_size: int, what: str) -> None:
    """Raise unless every batch drawn from ``n_examples`` has at least one row per rank."""
    sizes = {min(batch_size, n_examples), n_examples % batch_size or batch_size}
    if min(sizes) < world_size:
        raise BaselineConfigError(
            f"{what}: batches of {sorted(sizes)} rows from {n_examples} examples (batch_size "
            f"{batch_size}) cannot give each of {world_size} ranks a row; use batch_size >= "
            f"{world_size} and a number of examples whose remainder is 0 or >= {world_size}"
        )


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` in DDP on ``device`` (its trainable parameters synchronised; no buffer sync)."""
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
    )
