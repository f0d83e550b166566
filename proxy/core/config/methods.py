"""The methods a policy applies (guards and context builders) and the embedder they share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from proxy.core.config.base import StrictModel


EmbedderEngine = Literal["onnx", "torch"]
EmbedderPrecision = Literal["fp32", "int8"]


class EmbedderConfig(StrictModel):
    type: Literal["local", "openai"] = "local"
    model: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (embedded) or a path")
    engine: EmbedderEngine = Field(
        "onnx", description="local: ONNX Runtime (exported from the model's weights on first use,"
        " cached; no torch at run time) or torch (sentence-transformers)")
    precision: EmbedderPrecision = Field(
        "fp32", description="local onnx: fp32 (the torch engine's rows; the thresholds were tuned"
        " on them) or int8 (weights quantised per channel, one text per pass: about twice as fast"
        ", similarities within ~0.03 of fp32's); torch: fp32 only")
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    num_threads: int | None = Field(
        1, gt=0, description="local: threads of the embedding engine (null: all cores)")
    worker: Literal["process", "thread"] = Field(
        "process", description="local: embed in a child process (never waits on the server's "
        "GIL) or in a thread of this process")
    circuit_failures: int = Field(
        2, ge=1, description="consecutive outages (timeouts, unreachable) that open the circuit: "
        "calls then fail at once instead of waiting")
    circuit_cooldown_s: float = Field(
        5.0, gt=0, description="seconds an open circuit fails calls before one trial call")

    @model_validator(mode="after")
    def _remote_needs_url(self) -> EmbedderConfig:
        if self.type == "openai" and not self.base_url:
            raise ValueError("an 'openai' embedder needs 'base_url'")
        if self.engine == "torch" and self.precision != "fp32":
            raise ValueError("the torch engine runs fp32 only (precision: int8 needs engine: onnx)")
        return self


class InputDetectorConfig(StrictModel):
    type: Literal["input_detector"]
    threshold: float = Field(0.62, gt=0.0, le=1.0, description="cosine similarity to flag")
    aliases: bool = Field(True, description="also block on a name/alias match")
    context_turns: int = Field(3, ge=1, description="user turns looked at together")
    action: Literal["block", "flag"] = Field("block", description="flag: only trigger 'detected' methods")
    retain_margin: float | None = Field(
        0.0, ge=-1.0, le=1.0, description="block only when the nearest forget item is more "
        "similar than the nearest retain example by more than this (so a retain example is "
        "never blocked); null: ignore the retain examples")


DEFAULT_TARGET_FNR = 0.05


class InputClassifierConfig(StrictModel):
    type: Literal["input_classifier"]
    target_fnr: float = Field(DEFAULT_TARGET_FNR, gt=0.0, lt=1.0, description="calibration target")
    threshold: float | None = Field(None, gt=0.0, lt=1.0, description="override calibration")
    char_ngrams: bool = True
    action: Literal["block", "flag"] = Field("block", description="flag: only trigger 'detected' methods")


class ScopeConfig(StrictModel):
    type: Literal["scope"]
    target_fnr: float = Field(
        0.12, gt=0.0, lt=1.0, description="calibration target: the share of the policy's "
        "example questions (out-of-fold) the threshold may miss; the default is set for a "
        "policy that also runs an output filter, which catches much of what a question hides "
        "(a question whose answer is the target's name)")
    threshold: float | None = Field(None, gt=0.0, lt=1.0, description="override calibration")
    classifier: bool = Field(
        True, description="also weigh the input classifier's probability (trained on the same "
        "material, default settings): more accurate; false: no classifier to train, so adding "
        "a target costs no retraining")
    aliases: bool = Field(True, description="block at once on a name/alias match in any view")
    context_turns: int = Field(3, ge=1, description="user turns looked at together")
    action: Literal["block", "flag"] = Field("block", description="flag: only trigger 'detected' methods")


class PrefixConfig(StrictModel):
    type: Literal["prefix"]
    template: str | None = Field(None, description="uses {targets}; default in icul/prefix.py")
    when: Literal["always", "detected"] = "always"


class ICULConfig(StrictModel):
    type: Literal["icul"]
    k: int = Field(4, ge=0, description="forget demonstrations")
    s: int = Field(4, ge=0, description="retain demonstrations")
    forget_answer: Literal["refusal", "perturbed"] = "refusal"
    template: str | None = Field(None, description="completion template: {question} then {answer}")
    completion_query: Literal["wrap", "verbatim"] = Field(
        "wrap", description="put a completion prompt in the template's question slot, or append it"
    )
    retain_selection: Literal["erase", "random"] = Field(
        "erase", description="ERASE representatives, or a seeded random sample (plain ICUL)"
    )
    epsilon: float = Field(0.5, gt=0.0, description="ERASE quantization grid size")
    seed: int = Field(0, ge=0)
    when: Literal["always", "detected"] = "always"


class OutputFilterConfig(StrictModel):
    type: Literal["output_filter"]
    aliases: bool = True
    ngram_n: int = Field(6, ge=2, le=32)
    ngram_overlap: float = Field(0.5, gt=0.0, le=1.0)
    embedding_threshold: float | None = Field(0.75, gt=0.0, le=1.0)
    retain_margin: float | None = Field(
        0.0, ge=-1.0, le=1.0, description="an embedding match blocks only when the nearest "
        "forget item is more similar than the nearest retain question or answer by more than "
        "this; null: ignore the retain examples (names and n-grams block either way)")


MethodConfig = Annotated[
    InputDetectorConfig | InputClassifierConfig | ScopeConfig | PrefixConfig | ICULConfig | OutputFilterConfig,
    Field(discriminator="type"),
]
