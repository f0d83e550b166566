"""Reading a YAML file: ``${ENV}`` substitution, validation, and errors that name the field.

:func:`read_yaml` is the ladder every config file of the project climbs (the proxy's and the
harness's): read -> ``${ENV}`` -> YAML -> a :class:`ConfigError` naming the file at each step.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from proxy.core.config.policy import DocumentConfig
from proxy.core.config.root import Config
from proxy.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


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


def validate_mapping(model: type[M], data: Any, source: str) -> M:
    """``data`` (parsed YAML) as a ``model``; a ConfigError naming ``source`` and each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def parse_config(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate already-parsed YAML data; relative document paths resolve against ``base_dir``."""
    config = validate_mapping(Config, data, source)
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


def read_yaml(path: str | os.PathLike[str], what: str = "config") -> Any:
    """The parsed YAML of ``path`` after ``${ENV}`` substitution; ConfigError naming the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(substitute_env(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, substitute ``${ENV}`` references in, and validate a YAML config file."""
    file = Path(path)
    return parse_config(read_yaml(file), source=str(file), base_dir=file.parent)
