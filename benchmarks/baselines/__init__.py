"""Weight-based unlearning baselines (GA, GradDiff, NPO, SimNPO, IdkDPO, RMU) and their controls.

Usage::

    from benchmarks.baselines import unlearn
    result = unlearn(model, tokenizer, "ga", forget_passages, retain_passages,
                     config={"max_steps": 5, "lr": 1e-5}, output_dir="runs/ga")

Method classes load lazily through :data:`METHODS` (``METHODS.get("npo")``). The command line
``python -m benchmarks.baselines --help`` runs them in one process, or data parallel under
``torchrun`` / ``accelerate launch`` with the same results (``distributed.py``).
"""

from __future__ import annotations

from benchmarks.baselines.base import ForgetLossMethod, LossOutput, UnlearningMethod
from benchmarks.baselines.checkpoints import (
    capture_state,
    list_checkpoints,
    load_checkpoint,
    load_checkpoint_step,
    load_state,
    save_checkpoint,
)
from benchmarks.baselines.config import GradDiffConfig, TrainConfig
from benchmarks.baselines.data import (
    IGNORE_INDEX,
    QA_PROMPT,
    collate,
    encode_items,
    encode_passage,
    encode_qa,
    iterate_batches,
)
from benchmarks.baselines.errors import BaselineConfigError, BaselineDataError, BaselineError
from benchmarks.baselines.mixing import mixed_weights
from benchmarks.baselines.registry import METHODS
from benchmarks.baselines.runner import unlearn
from benchmarks.baselines.trainer import UnlearnResult, resolve_compute, select_trainable, train

__all__ = [
    "IGNORE_INDEX",
    "METHODS",
    "QA_PROMPT",
    "BaselineConfigError",
    "BaselineDataError",
    "BaselineError",
    "ForgetLossMethod",
    "GradDiffConfig",
    "LossOutput",
    "TrainConfig",
    "UnlearnResult",
    "UnlearningMethod",
    "capture_state",
    "collate",
    "encode_items",
    "encode_passage",
    "encode_qa",
    "iterate_batches",
    "list_checkpoints",
    "load_checkpoint",
    "load_checkpoint_step",
    "load_state",
    "mixed_weights",
    "resolve_compute",
    "save_checkpoint",
    "select_trainable",
    "train",
    "unlearn",
]
