"""Config validation: errors name the file and the field; check-config exits 1 on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import default_config, main
from proxy.core.config import load_config, parse_config
from proxy.core.errors import ConfigError
from tests.servers import write_config

MODELS = {"m": {"backend": "openai", "base_url": "http://127.0.0.1:1/v1"}}
POLICY = {"forget": [{"id": "t1", "name": "Target One"}]}


def _write(tmp_path: Path, data: dict) -> Path:
    return write_config(tmp_path / "config.yaml", data)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "models: Field required"),
        ({"models": {"m": {"backend": "nope"}}}, "models.m"),
        ({"models": {"m": {"backend": "openai"}}}, "models.m.openai.base_url: Field required"),
        ({"models": MODELS, "server": {"port": 70000}}, "server.port"),
        ({"models": MODELS, "server": {"prot": 1}}, "server.prot: Extra inputs are not permitted"),
        ({"models": MODELS, "routing": {"default_policy": "ghost"}}, "unknown policy 'ghost'"),
        ({"models": MODELS, "policies": {"p": {"forget": []}}}, "policies.p.forget"),
        ({"models": MODELS, "policies": {"p": {**POLICY, "methods": [{"type": "magic"}]}}},
         "policies.p.methods.0"),
        ({"models": MODELS, "policies": {"p": {**POLICY, "methods": [
            {"type": "input_detector", "threshold": 1.5}]}}},
         "policies.p.methods.0.input_detector.threshold"),
        ({"models": MODELS, "policies": {"p": {"forget": [
            {"id": "t1", "name": "A", "documents": [{"path": "missing.txt"}]}]}}},
         "policies.p.forget.0.documents.0.path: document file not found"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, data: dict, needle: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("binary.bin", b"\xff\xfe\x00 not text", "not UTF-8 text"),
    ("a-directory", None, "document file not found"),
])
def test_unreadable_document_is_a_config_error(
    tmp_path: Path, name: str, content: bytes | None, needle: str
) -> None:
    document = tmp_path / name
    document.write_bytes(content) if content is not None else document.mkdir()
    path = _write(tmp_path, {"models": MODELS, "policies": {"p": {"forget": [
        {"id": "t1", "name": "A", "documents": [{"path": name}]}]}}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)
    assert "policies.p.forget.0.documents.0.path" in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  m:\n    backend: openai\n    base_url: ${UPSTREAM_URL:http://x/v1}\n")
    assert load_config(path).models["m"].base_url == "http://x/v1"  # type: ignore[union-attr]
    monkeypatch.setenv("UPSTREAM_URL", "http://y/v1")
    assert load_config(path).models["m"].base_url == "http://y/v1"  # type: ignore[union-attr]
    path.write_text("models:\n  m:\n    backend: openai\n    base_url: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        load_config(path)


def test_routing_precedence() -> None:
    config = parse_config({
        "models": {**MODELS, "n": MODELS["m"]},
        "policies": {"a": POLICY, "b": POLICY},
        "routing": {"default_policy": "a", "models": {"n": "b"}, "api_keys": {"k1": "b"}},
    })
    assert config.policy_for("m", None) == "a"
    assert config.policy_for("n", None) == "b"
    assert config.policy_for("m", "k1") == "b"


def test_default_config_is_valid() -> None:
    config = default_config()
    assert config.models["gemma-3-270m"].backend == "llama_cpp"
    assert config.routing.default_policy == "demo"


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, {"models": MODELS})
    assert main(["check-config", str(good)]) == 0
    assert "base_url: http://127.0.0.1:1/v1" in capsys.readouterr().out
    bad = write_config(tmp_path / "bad.yaml", {"models": {"m": {"backend": "openai", "base_url": 3}}})
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "models.m.openai.base_url" in err and str(bad) in err
