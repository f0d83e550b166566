"""The whole config file: server, models, policies and the routing between them."""

from __future__ import annotations

from pydantic import Field, model_validator

from proxy.core.config.base import StrictModel
from proxy.core.config.models import ModelConfig
from proxy.core.config.policy import PolicyConfig
from proxy.core.config.server import ServerConfig


class RoutingConfig(StrictModel):
    default_policy: str | None = None
    models: dict[str, str] = Field(default_factory=dict, description="model -> policy")
    api_keys: dict[str, str] = Field(default_factory=dict, description="client key -> policy")


class Config(StrictModel):
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
