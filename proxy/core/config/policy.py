"""A policy: what to forget (targets, documents, questions), what to keep, and how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from proxy.core.config.base import StrictModel
from proxy.core.config.methods import EmbedderConfig, ICULConfig, MethodConfig, PrefixConfig


class QAExample(StrictModel):
    question: str = Field(min_length=1)
    answer: str | None = None
    perturbed_answer: str | None = None


def _as_examples(value: Any) -> Any:
    if isinstance(value, list):
        return [{"question": v} if isinstance(v, str) else v for v in value]
    return value


class DocumentConfig(StrictModel):
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


class ForgetTargetConfig(StrictModel):
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


class PolicyConfig(StrictModel):
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
