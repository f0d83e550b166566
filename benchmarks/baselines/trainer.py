"""The training loop shared by every unlearning method.

AdamW (no decay on 1-D tensors) with linear warm-up then a constant rate, gradient accumulation and
clipping, seeded shuffling, a per-step loss log (``loss_log.jsonl``) and checkpoints of the trained
parameters every ``save_every`` steps. CUDA when available with bf16 autocast when supported (fp32
master weights), else CPU fp32.

Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) the same loop runs data parallel
(``distributed.py``): each rank takes a slice of every global batch, the method's loss runs
inside one DDP forward, and the update equals the single-process one within float tolerance.
Only rank 0 writes the loss log and checkpoints and shows progress.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from benchmarks.baselines.base import UnlearningMethod
from benchmarks.baselines.checkpoints import capture_state, save_checkpoint
from benchmarks.baselines.config import TrainConfig
from benchmarks.baselines.data import Batch, Example, iterate_batches, to_device
from benchmarks.baselines.distributed import (
    DataParallel,
    check_shardable,
    setup_data_parallel,
    shard_parts,
    sum_over_ranks,
    wrap_ddp,
)
from benchmarks.baselines.errors import BaselineConfigError, BaselineDataError, BaselineError
from benchmarks.baselines.losses import text_config
from proxy.backends.hf_loader import default_dtype, resolve_device

LOSS_LOG = "loss_log.jsonl"


@dataclass(repr=False)
class UnlearnResult:
    """What a run did: states (CPU, trained parameters only), per-step log, checkpoints, timing."""

    method: str
    config: TrainConfig
    steps: int
    wall_time_s: float
    device: str
    dtype: str
    trained_parameters: list[str]
    original_state: dict[str, Tensor]
    final_state: dict[str, Tensor]
    loss_log: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    world_size: int = 1

    @property
    def seconds_per_step(self) -> float:
        """Mean optimiser-step time, preparation excluded."""
        return sum(e["step_time_s"] for e in self.loss_log) / max(len(self.loss_log), 1)

    def __repr__(self) -> str:
        return (
            f"UnlearnResult(method={self.method!r}, steps={self.steps}, device={self.device!r}, "
            f"dtype={self.dtype!r}, world_size={self.world_size}, "
            f"wall_time_s={self.wall_time_s:.2f}, "
            f"trained_parameters={len(self.trained_parameters)}, "
            f"checkpoints={len(self.checkpoints)})"
        )


def resolve_compute(
    device: str | torch.device | None, dtype: str | None
) -> tuple[torch.device, torch.dtype]:
    """The device (:func:`proxy.backends.hf_loader.resolve_device`: CUDA when available) and
    the compute dtype (``dtype``, else bf16 on CUDA when supported, else fp32)."""
    resolved = resolve_device(device)
    return resolved, getattr(torch, dtype) if dtype is not None else default_dtype(resolved)


def select_trainable(model: nn.Module, config: TrainConfig, patterns: Sequence[str]) -> list[str]:
    """Set ``requires_grad`` from the patterns and the freezing options; return trained names."""
    n_layers = text_config(model).num_hidden_layers if config.train_last_n_layers else 0
    names = []
    for name, param in model.named_parameters():
        keep = not patterns or any(re.search(p, name) for p in patterns)
        keep = keep and not any(re.search(p, name) for p in config.frozen_patterns)
        if config.train_last_n_layers is not None:
            layer = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
            keep = (
                keep
                and layer is not None
                and int(layer[1]) >= n_layers - config.train_last_n_layers
            )
        param.requires_grad_(keep)
        if keep:
            names.append(name)
    if not names:
        raise BaselineConfigError("the freezing options leave no parameter to train")
    return names


def train(
    model: nn.Module,
    method: UnlearningMethod,
    forget: Sequence[Example],
    retain: Sequence[Example],
    *,
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    pad_id: int = 0,
) -> UnlearnResult:
    """Run ``method`` on tokenised examples, updating ``model`` in place (moved to device, fp32).

    Returns the result; ``requires_grad`` flags and train/eval mode are restored afterwards.
    Launched data parallel, every rank calls this with the same model, data and config, and
    only rank 0 writes to ``output_dir``. Raises :class:`BaselineDataError` on missing data,
    :class:`BaselineConfigError` on batches too small to give every rank a row,
    :class:`BaselineError` on a non-finite loss.
    """
    config = method.config
    if not forget or (method.uses_retain and not retain):
        raise BaselineDataError(
            f"{method.name} needs forget data" + " and retain data" * method.uses_retain
        )
    if config.save_every is not None and output_dir is None:
        raise BaselineConfigError("save_every needs an output_dir for the checkpoints")
    started = time.perf_counter()
    resolved, dtype = resolve_compute(device, config.dtype)
    parallel, resolved = setup_data_parallel(resolved)
    if parallel is not None:
        check_shardable(len(forget), config.batch_size, parallel.world_size, "forget")
        if method.uses_retain:
            check_shardable(len(retain), config.batch_size, parallel.world_size, "retain")
        if not parallel.is_main:
            output_dir, progress = None, False
    model.to(device=resolved, dtype=torch.float32)
    torch.manual_seed(config.seed)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    try:
        names = select_trainable(model, config, method.trainable_patterns(model))
        original = capture_state(model, names)
        with _autocast(resolved, dtype):
            method.prepare(model, forget, pad_id=pad_id)
        model.train()
        run = _Run(model, method, names, resolved, dtype, output_dir, parallel)
        run.loop(_batches(method, forget, retain, pad_id=pad_id, device=resolved), progress)
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(flags[name])
        model.train(was_training)
    return UnlearnResult(
        method=method.name,
        config=config,
        steps=config.max_steps,
        wall_time_s=time.perf_counter() - started,
        device=str(resolved),
        dtype=str(dtype).removeprefix("torch."),
        trained_parameters=names,
        original_state=original,
        final_state=capture_state(model, names),
        loss_log=run.log,
        checkpoints=run.checkpoints,
        world_size=1 if parallel is None else parallel.world_size,
    )


def _autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def _batches(
    method: UnlearningMethod,
    forget: Sequence[Example],
    retain: Sequence[Example],
    *,
    pad_id: int,
    device: torch.device,
) -> Iterator[Batch]:
    config = method.config
    forget_it = iterate_batches(
        forget,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        pad_id=pad_id,
    )
    retain_it = (
        iterate_batches(
            retain,
            batch_size=config.batch_size,
            generator=torch.Generator().manual_seed(config.seed + 1),
            pad_id=pad_id,
        )
        if method.uses_retain
        else None
    )
    while True:
        yield {
            "forget": to_device(next(forget_it), device),
            "retain": to_device(next(retain_it), device) if retain_it is not None else None,
        }


class _Objective(nn.Module):
    """The method's loss as one module call, so DDP sees one forward per micro-batch however many
    model passes, hooks or weight swaps the method makes inside it."""

    def __init__(self, model: nn.Module, method: UnlearningMethod) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        output = self.method.compute_loss(self.model, batch)
        return output.loss, output.metrics


class _Run:
    """Optimiser, schedule, loss log and checkpoints of one ``train`` call."""

    def __init__(
        self,
        model: nn.Module,
        method: UnlearningMethod,
        names: list[str],
        device: torch.device,
        dtype: torch.dtype,
        output_dir: str | os.PathLike[str] | None,
        parallel: DataParallel | None,
    ) -> None:
        self.model, self.method, self.names, self.config = model, method, names, method.config
        self.device, self.dtype, self.parallel = device, dtype, parallel
        objective = _Objective(model, method)
        self.objective: nn.Module = objective if parallel is None else wrap_ddp(objective, device)
        self.output_dir = None if output_dir is None else Path(output_dir)
        params = dict(model.named_parameters())
        self.params = [params[name] for name in names]
        groups = [
            {
                "params": [p for p in self.params if p.ndim > 1],
                "weight_decay": self.config.weight_decay,
            },
            {"params": [p for p in self.params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.config.lr)
        warmup = self.config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1))
        )
        self.log: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []

    def loop(self, batches: Iterator[Batch], progress: bool) -> None:
        with ExitStack() as stack:
            log_file = None
            if self.output_dir is not None:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                log_file = stack.enter_context(
                    open(self.output_dir / LOSS_LOG, "w", encoding="utf-8")
                )
            bar = stack.enter_context(
                tqdm(total=self.config.max_steps, disable=not progress, desc=self.method.name)
            )
            for step in range(1, self.config.max_steps + 1):
                entry = self.step(step, batches)
                self.log.append(entry)
                if log_file is not None:
                    log_file.write(json.dumps(entry) + "\n")
                    log_file.flush()
                every = self.config.save_every
                if every and self.output_dir is not None and step % every == 0:
                    state = capture_state(self.model, self.names)
                    self.checkpoints.append(save_checkpoint(state, self.output_dir, step))
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.4g}")

    def step(self, step: int, batches: Iterator[Batch]) -> dict[str, float]:
        """One optimiser step over ``grad_accum_steps`` micro-batches; returns the log entry."""
        started = time.perf_counter()
        accum = self.config.grad_accum_steps
        world = 1 if self.parallel is None else self.parallel.world_size
        totals: dict[str, float] = {}
        for micro in range(accum):
            batch = shard_parts(next(batches), self.parallel)
            with self._sync_gradients(micro == accum - 1):
                with _autocast(self.device, self.dtype):
                    loss, metrics = self.objective(batch)
                values = self._batch_values(loss, metrics)
                if not math.isfinite(values["loss"]):
                    raise BaselineError(f"non-finite {self.method.name} loss at step {step}")
                (loss * world / accum).backward()
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value / accum
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.params, self.config.max_grad_norm or math.inf
        )
        lr = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        return {
            "step": step,
            **totals,
            "grad_norm": float(grad_norm),
            "lr": lr,
            "step_time_s": elapsed,
        }

    def _sync_gradients(self, sync: bool) -> AbstractContextManager[None]:
        """DDP's ``no_sync`` unless ``sync``: micro-batches accumulate locally, the last reduces."""
        if sync or self.parallel is None:
            return nullcontext()
        context: AbstractContextManager[None] = self.objective.no_sync()  # type: ignore[operator]
        return context

    def _batch_values(self, loss: Tensor, metrics: dict[str, float]) -> dict[str, float]:
        """The loss and metrics of the global micro-batch: the ranks' shares summed."""
        keys = ["loss", *metrics]
        shares = torch.tensor(
            [loss.item(), *metrics.values()], dtype=torch.float64, device=self.device
        )
        return dict(zip(keys, sum_over_ranks(shares).tolist(), strict=True))
