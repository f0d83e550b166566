"""``unlearn-proxy check-config``: the resolved config, and what each policy compiles to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.core.config import Config


def _redacted(config: Config) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["server"]["api_keys"] = [f"{k[:3]}…" for k in config.server.api_keys]
    data["routing"]["api_keys"] = {f"{k[:3]}…": v for k, v in config.routing.api_keys.items()}
    return data


def describe_config(config: Config, *, base_dir: Path, compile_policies: bool = True) -> str:
    """A human-readable report: the resolved YAML, then one section per compiled policy."""
    lines = ["# resolved configuration", yaml.safe_dump(_redacted(config), sort_keys=False)]
    if compile_policies:
        from proxy.policy import compile_policy

        for name, policy in config.policies.items():
            runtime = compile_policy(
                name, policy, base_dir=base_dir, state_dir=Path(config.server.state_dir)
            )
            lines.append(f"# policy {name!r}")
            lines.extend(runtime.describe())
            lines.append("")
    return "\n".join(lines)
