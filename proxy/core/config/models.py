"""The ``models:`` section: one entry per model name a client may ask for, by backend."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from proxy.core.config.base import StrictModel


class _ModelBase(StrictModel):
    max_tokens_default: int = Field(256, gt=0)


class OpenAIModelConfig(_ModelBase):
    backend: Literal["openai"]
    max_tokens_default: int | None = Field(  # type: ignore[assignment]
        None, gt=0, description="max_tokens sent when a request sets neither max_tokens nor "
        "max_completion_tokens; default: none (the upstream's own default)")
    base_url: str
    api_key_env: str | None = None
    upstream_model: str | None = Field(None, description="model name sent upstream")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_connections: int = Field(
        256, gt=0, description="upstream connections, all kept alive (requests beyond wait)")
    keepalive_timeout_s: float = Field(
        4.0, gt=0, description="drop a pooled connection idle this long: below the upstream's "
        "own idle timeout (uvicorn's, behind vLLM and llama.cpp's Python server, is 5 s)")


class LlamaCppModelConfig(_ModelBase):
    backend: Literal["llama_cpp"]
    model_path: str | None = Field(None, description="GGUF file; default: embedded Gemma 3 270M")
    n_ctx: int = Field(4096, gt=0)
    n_threads: int | None = Field(None, gt=0, description="default: the CPUs usable, at most 4")
    seed: int = 0
    chat_format: str | None = Field(
        None, description="'transcript', a llama.cpp chat format, or None: the GGUF's template "
        "when it has one, else 'transcript'"
    )


class TransformersModelConfig(_ModelBase):
    backend: Literal["transformers"]
    model_path: str | None = Field(None, description="HF model dir; default: embedded Gemma GGUF")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(8, gt=0)
    weights: str | None = Field(
        None, description="trained-parameter state (.pt, e.g. a benchmarks.baselines "
        "checkpoint) loaded over the base model")
    mix_alpha: float = Field(
        1.0, ge=0.0, le=1.0, description="model mixing: (1-a)*base + a*weights (needs weights)")

    @model_validator(mode="after")
    def _mixing_needs_weights(self) -> TransformersModelConfig:
        if self.weights is None and self.mix_alpha != 1.0:
            raise ValueError("mix_alpha needs weights")
        return self


ModelConfig = Annotated[
    OpenAIModelConfig | LlamaCppModelConfig | TransformersModelConfig,
    Field(discriminator="backend"),
]
