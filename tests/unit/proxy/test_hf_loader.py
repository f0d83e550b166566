"""Loading torch models: the GGUF → HF checkpoint cache and its atomicity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.backends import hf_loader
from proxy.core.embedded import embedded_gguf_path, embedded_gguf_sha256
from proxy.cache_dirs import COMPLETE_MARKER
from proxy.core.errors import ConfigError


def _fake_convert(calls: list[Path]) -> Callable[[Path, Path], None]:
    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    return convert


def test_conversion_is_cached_by_sha(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[Path] = []
    monkeypatch.setattr(hf_loader, "_convert_gguf", _fake_convert(calls))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"weights")
    first = hf_loader.converted_dir(gguf, "ab" * 32)
    second = hf_loader.converted_dir(gguf, "ab" * 32)
    assert first == second == tmp_path / "cache" / "hf" / ("ab" * 8)
    assert len(calls) == 1
    assert (first / COMPLETE_MARKER).is_file()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp dirs left


def test_cache_without_marker_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path))
    calls: list[Path] = []
    monkeypatch.setattr(hf_loader, "_convert_gguf", _fake_convert(calls))
    half = tmp_path / "hf" / ("cd" * 8)
    half.mkdir(parents=True)
    (half / "model.safetensors").write_text("truncated")
    target = hf_loader.converted_dir(tmp_path / "m.gguf", "cd" * 32)
    assert calls and target == half
    assert not (target / "model.safetensors").exists()
    assert (target / "config.json").is_file()


def test_failed_conversion_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path))

    def crash(gguf: Path, out: Path) -> None:
        (out / "partial").write_text("x")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(hf_loader, "_convert_gguf", crash)
    with pytest.raises(RuntimeError):
        hf_loader.converted_dir(tmp_path / "m.gguf", "ef" * 32)
    assert list((tmp_path / "hf").iterdir()) == []


def test_missing_and_wrong_paths_name_model_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path: model not found"):
        hf_loader.load_causal_lm(str(tmp_path / "absent"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="model_path: expected an HF model dir"):
        hf_loader.load_causal_lm(str(tmp_path / "weights.bin"))
    with pytest.raises(ConfigError, match="model_path: not an HF model dir"):
        hf_loader.load_causal_lm(str(tmp_path))


def test_device_is_validated() -> None:
    assert hf_loader.resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="device"):
        hf_loader.resolve_device("tpu")


@pytest.mark.slow
def test_embedded_model_loads_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    sha = embedded_gguf_sha256()
    cached = hf_loader.converted_dir(embedded_gguf_path(), sha)  # converts if the cache is empty
    assert (cached / COMPLETE_MARKER).is_file()
    assert cached.name == sha[:16] and (cached / "config.json").is_file()

    def no_conversion(gguf: Path, out: Path) -> None:
        raise AssertionError("the cached checkpoint should have been used")

    monkeypatch.setattr(hf_loader, "_convert_gguf", no_conversion)
    model, tokenizer, info = hf_loader.load_causal_lm(None, device="cpu")
    assert info.source == str(cached) and info.sha256 == sha
    assert info.model_id == "gemma-3-270m" and info.dtype == "float32" and info.device == "cpu"
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    assert not model.training
