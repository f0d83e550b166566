"""Loading a causal LM into torch: an HF checkpoint dir, a GGUF file, or the embedded Gemma.

A GGUF is dequantised once (``from_pretrained(gguf_file=...)`` takes ~30 s) and saved as a plain
HF checkpoint under ``cache_dir()/hf/<sha256[:16]>/``, so later loads take a second or two. The
cache is written to a temporary dir, marked complete, then renamed into place: a crashed
conversion never leaves a half cache, and a dir without the marker is rebuilt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from proxy.core.embedded import (
    EMBEDDED_MODEL_NAME,
    cache_dir,
    embedded_gguf_path,
    embedded_gguf_sha256,
)
from proxy.cache_dirs import build_cached_dir
from proxy.core.errors import ConfigError
from proxy.core.files import file_sha256



@dataclass(frozen=True)
class ModelInfo:
    """Where a loaded model came from and how it runs (for result provenance)."""

    model_id: str
    source: str
    sha256: str | None
    device: str
    dtype: str
    load_s: float


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) → cuda when available, else cpu; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or a ``torch.device`` as given. CUDA without a GPU, or any other name, is a
    ConfigError naming ``device``."""
    if isinstance(device, torch.device):
        resolved = device
    elif device in (None, "auto"):
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif device == "cpu" or str(device).split(":")[0] == "cuda":
        resolved = torch.device(device)
    else:
        raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but torch sees no CUDA device")
    return resolved


def default_dtype(device: torch.device) -> torch.dtype:
    """The compute dtype for ``device``: bf16 on CUDA when supported, else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def converted_dir(gguf: Path, sha256: str) -> Path:
    """The cached HF checkpoint converted from ``gguf``, converting it first if needed."""
    target = cache_dir() / "hf" / sha256[:16]
    return build_cached_dir(target, sha256, lambda tmp: _convert_gguf(gguf, tmp))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` to fp32 and save it (with its tokenizer) as an HF checkpoint."""
    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, dtype=torch.float32, **kwargs
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _resolve_source(model_path: str | None) -> tuple[Path, str, str | None]:
    """(HF checkpoint dir, model id, GGUF sha256 or None) for a configured ``model_path``."""
    if model_path is None:
        sha = embedded_gguf_sha256()
        return converted_dir(embedded_gguf_path(), sha), EMBEDDED_MODEL_NAME, sha
    path = Path(model_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model_path: not an HF model dir (no config.json): {path}")
        return path, path.name, None
    if path.is_file() and path.suffix == ".gguf":
        sha = file_sha256(path)
        return converted_dir(path, sha), path.stem, sha
    if path.is_file():
        raise ConfigError(f"model_path: expected an HF model dir or a .gguf file: {path}")
    raise ConfigError(f"model_path: model not found: {path}")


def load_causal_lm(
    model_path: str | None, *, device: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """Load ``(model, tokenizer, info)``; ``model_path=None`` is the embedded Gemma 3 270M.

    The model is in eval mode on the resolved device (bf16 on CUDA when supported, else fp32);
    the tokenizer pads on the left. Raises ConfigError naming ``model_path`` or ``device``.
    """
    start = time.perf_counter()
    torch_device = resolve_device(device)
    dtype = default_dtype(torch_device)
    source, model_id, sha = _resolve_source(model_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(torch_device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    info = ModelInfo(
        model_id=model_id,
        source=str(source),
        sha256=sha,
        device=str(torch_device),
        dtype=str(dtype).removeprefix("torch."),
        load_s=time.perf_counter() - start,
    )
    return model, tokenizer, info
