"""Backends by config name; heavy engines are imported only when a model uses them."""

from __future__ import annotations

from typing import Any

from proxy.backends.base import Backend
from proxy.core.registry import Registry

BACKENDS: Registry[Any] = Registry("backend")
BACKENDS.register("openai", "proxy.backends.openai_compat:OpenAICompatBackend")
BACKENDS.register("llama_cpp", "proxy.backends.llama_cpp:LlamaCppBackend")
BACKENDS.register("transformers", "proxy.backends.transformers_backend:TransformersBackend")


def build_backend(public_model: str, cfg: Any) -> Backend:
    """Instantiate the backend that ``cfg.backend`` names for the public model name."""
    backend: Backend = BACKENDS.get(cfg.backend).from_config(cfg, public_model=public_model)
    return backend


__all__ = ["BACKENDS", "Backend", "build_backend"]
