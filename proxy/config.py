"""The configuration file: server, models, policies and routing, validated with pydantic.

Every model forbids unknown keys, so a typo is an error that names its YAML path rather than a
setting silently ignored. :func:`load_config` turns any problem into a :class:`ConfigError`
whose message names the file, the field path and what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxy.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- server


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="client keys; empty = open")
    admin_key_env: str = Field("UNLEARN_ADMIN_KEY", description="env var holding the admin key")
    max_body_bytes: int = Field(1_048_576, gt=0)
    body_timeout_s: float = Field(
        30.0, gt=0, description="the whole request body must arrive within this (else 408)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a connection's request headers must arrive within this of it "
        "opening or the request's first byte (else 408 and the connection is closed)")
    max_messages: int = Field(256, gt=0)
    max_prompt_chars: int = Field(200_000, gt=0)
    max_tokens_limit: int = Field(8192, gt=0, description="largest max_tokens a client may ask")
    rate_limit_per_minute: int | None = Field(None, gt=0, description="per client key")
    state_dir: str = Field(".unlearn-proxy", description="SQLite store and compiled artefacts")
    protect_metrics: bool = Field(
        False, description="/metrics, and /healthz's model and policy lists, need a client key "
        "from api_keys or the admin key")
    protect_docs: bool = Field(
        False, description="/docs, /redoc and /openapi.json need a client key or the admin key")


# --------------------------------------------------------------------------- models


class _ModelBase(_Strict):
    max_tokens_default: int = Field(256, gt=0)


class OpenAIModelConfig(_ModelBase):
    backend: Literal["openai"]
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

# --------------------------------------------------------------------------- policies


class QAExample(_Strict):
    question: str = Field(min_length=1)
    answer: str | None = None
    perturbed_answer: str | None = None


def _as_examples(value: Any) -> Any:
    if isinstance(value, list):
        return [{"question": v} if isinstance(v, str) else v for v in value]
    return value


class DocumentConfig(_Strict):
    text: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DocumentConfig:
        if (self.text is None) == (self.path is None):
            raise ValueError("a document needs exactly one of 'text' or 'path'")
        return self


MAX_REQUEST_DOCUMENT_CHARS = 100_000


class RequestDocumentConfig(DocumentConfig):
    """A document of a forget request from the admin API: inline text only, capped in size
    (the server's files are not a client's to read)."""

    text: str | None = Field(None, max_length=MAX_REQUEST_DOCUMENT_CHARS)

    @field_validator("path")
    @classmethod
    def _no_path(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("a forget request's documents are text only: send 'text', not 'path'")
        return value


class ForgetTargetConfig(_Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[^/\s]+$", description="no slash or space")
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None
    documents: list[DocumentConfig] = Field(default_factory=list)
    questions: list[QAExample] = Field(default_factory=list)

    _examples = field_validator("questions", mode="before")(_as_examples)

    @field_validator("documents", mode="before")
    @classmethod
    def _documents(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def names(self) -> list[str]:
        """The name followed by its aliases."""
        return [self.name, *self.aliases]


class ForgetRequestTarget(ForgetTargetConfig):
    """A forget target sent through the admin API: documents as :class:`RequestDocumentConfig`."""

    documents: list[RequestDocumentConfig] = Field(default_factory=list)  # type: ignore[assignment]


class EmbedderConfig(_Strict):
    type: Literal["local", "openai"] = "local"
    model: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (embedded) or a path")
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    num_threads: int | None = Field(
        1, gt=0, description="local: torch threads of the embedding worker (null: all cores)")
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
        return self


class InputDetectorConfig(_Strict):
    type: Literal["input_detector"]
    threshold: float = Field(0.62, gt=0.0, le=1.0, description="cosine similarity to flag")
    aliases: bool = Field(True, description="also block on a name/alias match")
    context_turns: int = Field(3, ge=1, description="user turns looked at together")
    action: Literal["block", "flag"] = Field("block", description="flag: only trigger 'detected' methods")


class InputClassifierConfig(_Strict):
    type: Literal["input_classifier"]
    target_fnr: float = Field(0.05, gt=0.0, lt=1.0, description="calibration target")
    threshold: float | None = Field(None, gt=0.0, lt=1.0, description="override calibration")
    char_ngrams: bool = True
    action: Literal["block", "flag"] = Field("block", description="flag: only trigger 'detected' methods")


class PrefixConfig(_Strict):
    type: Literal["prefix"]
    template: str | None = Field(None, description="uses {targets}; default in icul/prefix.py")
    when: Literal["always", "detected"] = "always"


class ICULConfig(_Strict):
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


class OutputFilterConfig(_Strict):
    type: Literal["output_filter"]
    aliases: bool = True
    ngram_n: int = Field(6, ge=2, le=32)
    ngram_overlap: float = Field(0.5, gt=0.0, le=1.0)
    embedding_threshold: float | None = Field(0.75, gt=0.0, le=1.0)


MethodConfig = Annotated[
    InputDetectorConfig | InputClassifierConfig | PrefixConfig | ICULConfig | OutputFilterConfig,
    Field(discriminator="type"),
]


class PolicyConfig(_Strict):
    description: str = ""
    forget: list[ForgetTargetConfig] = Field(min_length=1)
    retain: list[QAExample] = Field(default_factory=list)
    methods: list[MethodConfig] = Field(default_factory=list)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    on_block: Literal["refuse", "error", "feign"] = "refuse"
    refusal_text: str = "I'm sorry, but I can't help with that."
    feign_text: str = "I'm not sure — I don't have any information about that."
    stream_block: Literal["graceful", "strict"] = "graceful"
    fail_mode: Literal["closed", "open"] = "closed"
    fail_closed_as: Literal["error", "block"] = Field(
        "error", description="fail_mode closed: a failed guard answers 503 server_error with "
        "x-should-retry: true (error) or the policy's block answer (block); audited as "
        "guard_failed either way")
    audit_prompts: bool = False
    speculate: bool = Field(
        False,
        description="send the request upstream while the input guards run, and cancel it when "
        "they block: the guards' latency hides behind the model's, but a blocked prompt still "
        "reaches the upstream",
    )

    _examples = field_validator("retain", mode="before")(_as_examples)

    @model_validator(mode="after")
    def _speculation_possible(self) -> PolicyConfig:
        if self.speculate:
            rewriting = [m.type for m in self.methods if isinstance(m, PrefixConfig | ICULConfig)]
            if rewriting:
                raise ValueError(
                    f"speculate: true needs a policy whose methods do not rewrite the request "
                    f"(this one has {', '.join(rewriting)}): the request goes upstream before "
                    f"the guards decide"
                )
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyConfig:
        ids = [t.id for t in self.forget]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate forget target ids: {', '.join(dupes)}")
        return self


# --------------------------------------------------------------------------- root


class RoutingConfig(_Strict):
    default_policy: str | None = None
    models: dict[str, str] = Field(default_factory=dict, description="model -> policy")
    api_keys: dict[str, str] = Field(default_factory=dict, description="client key -> policy")


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    models: dict[str, ModelConfig] = Field(min_length=1)
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)

    @model_validator(mode="after")
    def _routes_exist(self) -> Config:
        routing = self.routing
        named = [("routing.default_policy", routing.default_policy)]
        named += [(f"routing.models.{m}", p) for m, p in routing.models.items()]
        named += [(f"routing.api_keys.<{k[:4]}…>", p) for k, p in routing.api_keys.items()]
        for where, policy in named:
            if policy is not None and policy not in self.policies:
                raise ValueError(f"{where}: unknown policy {policy!r}")
        for model in routing.models:
            if model not in self.models:
                raise ValueError(f"routing.models: unknown model {model!r}")
        return self

    def policy_for(self, model: str, api_key: str | None) -> str | None:
        """The policy name that applies: by client key, then by model, then the default."""
        if api_key is not None and api_key in self.routing.api_keys:
            return self.routing.api_keys[api_key]
        return self.routing.models.get(model, self.routing.default_policy)


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def substitute_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:default}``; an unset variable without default is an error."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name, default)
        if value is None:
            raise ConfigError(f"environment variable {name!r} is not set and has no default")
        return value

    return _ENV_VAR.sub(repl, text)


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(root)"
        lines.append(f"  {path}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate already-parsed YAML data; relative document paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    _check_document_paths(config, source=source, base_dir=base_dir or Path.cwd())
    return config


def _check_document_paths(config: Config, *, source: str, base_dir: Path) -> None:
    for policy_name, policy in config.policies.items():
        for t_index, target in enumerate(policy.forget):
            for d_index, doc in enumerate(target.documents):
                if doc.path is None:
                    continue
                field = f"policies.{policy_name}.forget.{t_index}.documents.{d_index}.path"
                path = Path(doc.path) if Path(doc.path).is_absolute() else base_dir / doc.path
                if not path.is_file():
                    raise ConfigError(f"{source}: {field}: document file not found: {path}")
                try:
                    resolve_document(doc, base_dir)
                except (OSError, UnicodeDecodeError) as exc:
                    why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
                    raise ConfigError(f"{source}: {field}: cannot read {path}: {why}") from None


def resolve_document(doc: DocumentConfig, base_dir: Path) -> str:
    """The text of a forget document (inline, or read from its path)."""
    if doc.text is not None:
        return doc.text
    path = Path(doc.path or "")  # DocumentConfig guarantees a path when there is no text
    path = path if path.is_absolute() else base_dir / path
    return path.read_text(encoding="utf-8")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, substitute ``${ENV}`` references in, and validate a YAML config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(substitute_env(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    return parse_config(data, source=str(file), base_dir=file.parent)
