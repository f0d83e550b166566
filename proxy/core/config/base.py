"""The base of every config model: unknown keys are errors, and a config never changes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Forbids unknown keys (a typo names its YAML path instead of being ignored); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
