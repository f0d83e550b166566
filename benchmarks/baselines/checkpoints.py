"""Checkpoints of the trained parameters: capture, save, list, load by step, apply to a model.

A checkpoint holds only the parameters the run trained (the rest equal the original model's),
as ``checkpoint-<step>.pt`` written with ``torch.save`` and read back bit for bit with
``weights_only=True``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmarks.baselines.errors import BaselineDataError

_NAME = re.compile(r"checkpoint-(\d+)\.pt")


def capture_state(model: nn.Module, names: Iterable[str]) -> dict[str, Tensor]:
    """CPU copies of the named parameters."""
    params = dict(model.named_parameters())
    names = list(names)
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise BaselineDataError(f"the model has no parameters named {unknown[:5]}")
    return {name: params[name].detach().to("cpu", copy=True) for name in names}


def load_state(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Copy ``state`` into the model's parameters in place (dtype/device kept, shapes checked)."""
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise BaselineDataError(f"state has parameters the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise BaselineDataError(
                    f"{name}: shape {tuple(value.shape)} != model's {tuple(params[name].shape)}"
                )
            params[name].copy_(value)


def save_checkpoint(
    state: Mapping[str, Tensor], output_dir: str | os.PathLike[str], step: int
) -> Path:
    """Write ``state`` as ``<output_dir>/checkpoint-<step>.pt`` (atomically) and return the path."""
    return save_state(state, Path(output_dir) / f"checkpoint-{step:06d}.pt")


def save_state(state: Mapping[str, Tensor], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (a partial file renamed into place); return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(dict(state), partial)
    partial.replace(path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors)."""
    try:
        state: dict[str, Tensor] = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BaselineDataError(f"no checkpoint at {path}") from None
    return state


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint in ``output_dir``, by increasing step."""
    directory = Path(output_dir)
    if not directory.is_dir():
        return []
    found = ((_NAME.fullmatch(p.name), p) for p in directory.iterdir())
    return sorted((int(match[1]), path) for match, path in found if match)


def load_checkpoint_step(output_dir: str | os.PathLike[str], step: int) -> dict[str, Tensor]:
    """The checkpoint saved at ``step``; raises with the available steps when missing."""
    available = dict(list_checkpoints(output_dir))
    if step not in available:
        raise BaselineDataError(
            f"no checkpoint for step {step} in {output_dir} (have {sorted(available)})"
        )
    return load_checkpoint(available[step])
