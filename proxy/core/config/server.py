"""The ``server:`` section: where the proxy listens, its limits, keys and state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from proxy.core.config.base import StrictModel


class StoreConfig(StrictModel):
    """Where forget requests, withdrawals, retain removals and the audit log live."""

    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="sqlite: one file in state_dir (one replica); postgres: shared "
        "by every replica, changes propagated to all of them")
    dsn: str | None = Field(
        None, description="postgres: the connection string, e.g. ${DATABASE_URL}")
    pool_size: int = Field(4, ge=1, description="postgres: connections per replica")
    connect_timeout_s: float = Field(5.0, gt=0, description="postgres: per connection attempt")
    reconcile_s: float = Field(
        0.5, gt=0, description="postgres: how often a replica compares its state's version "
        "with the database's (the fallback for a missed change notification)")

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> StoreConfig:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("a 'postgres' store needs 'dsn'")
        return self


class ServerConfig(StrictModel):
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
    store: StoreConfig = Field(default_factory=StoreConfig)
    protect_metrics: bool = Field(
        False, description="/metrics, and /healthz's model and policy lists, need a client key "
        "from api_keys or the admin key")
    protect_docs: bool = Field(
        False, description="/docs, /redoc and /openapi.json need a client key or the admin key")
