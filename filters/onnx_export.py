"""A sentence-transformers model as ONNX files, exported once from its own weights and cached.

    python -m filters.onnx_export MODEL_DIR OUT_DIR     # what :func:`onnx_model_dir` runs

:func:`onnx_model_dir` returns ``cache_dir()/onnx/<name>-<key>/`` holding ``model.fp32.onnx``
(the transformer with mean pooling and L2 normalisation in the graph: token ids, attention mask
and token type ids in, one unit row per text out), ``model.int8.onnx`` (the same, weights
quantised to int8 per channel by ``onnxruntime.quantization.quantize_dynamic``), the model's
``tokenizer.json`` and ``settings.json`` (its ``max_seq_length``). The key is a sha256 of the
model directory's files and of this exporter's version, so changed weights export anew.
Nothing is downloaded. The export is the only step that needs torch; it runs in a child
process (``sys.executable -m filters.onnx_export``), so neither the server nor the embedding
worker ever imports torch to embed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from proxy.core.cache_dirs import build_cached_dir
from proxy.core.embedded import cache_dir
from proxy.core.errors import ConfigError
from proxy.core.files import file_sha256

__all__ = ["EXPORT_VERSION", "PRECISIONS", "OnnxExportError", "model_key", "onnx_model_dir"]

EXPORT_VERSION = "onnx-export/2"  # 2: int8 weights quantised per channel
OPSET = 17
PRECISIONS = {"fp32": "model.fp32.onnx", "int8": "model.int8.onnx"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
KEYED_FILES = ("config.json", "tokenizer.json", "sentence_bert_config.json",
               "modules.json", "1_Pooling/config.json")
EXPORT_TIMEOUT_S = 600.0


class OnnxExportError(RuntimeError):
    """Exporting the model to ONNX failed (the message carries the exporter's output)."""


def _pooling_is_mean(model_dir: Path) -> bool:
    pooling = model_dir / "1_Pooling" / "config.json"
    if not pooling.is_file():
        return False
    settings = json.loads(pooling.read_text(encoding="utf-8"))
    return bool(settings.get("pooling_mode_mean_tokens")) and not any(
        settings.get(mode) for mode in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                         "pooling_mode_mean_sqrt_len_tokens"))


def check_model_dir(model_dir: Path) -> Path:
    """The weights file of a sentence-transformers directory the exporter can read (a BERT-like
    transformer, mean pooling, a ``tokenizer.json``); raises :class:`ConfigError` naming what is
    missing."""
    weights = next((model_dir / name for name in WEIGHT_FILES if (model_dir / name).is_file()), None)
    missing = [name for name in ("config.json", "tokenizer.json") if not (model_dir / name).is_file()]
    if weights is None:
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise ConfigError(f"embedder.model: {model_dir} has no {', '.join(missing)}; the onnx "
                          "engine exports from a sentence-transformers model directory")
    if not _pooling_is_mean(model_dir):
        raise ConfigError(f"embedder.model: {model_dir} does not mean-pool (1_Pooling/config.json);"
                          " the onnx engine exports mean-pooled models only: use engine: torch")
    return weights


def model_key(model_dir: Path) -> str:
    """sha256 of the exporter version and of every model file the export reads."""
    weights = check_model_dir(model_dir)
    digests = {name: file_sha256(model_dir / name) for name in KEYED_FILES
               if (model_dir / name).is_file()}
    digests[weights.name] = file_sha256(weights)
    payload = json.dumps({"exporter": EXPORT_VERSION, "opset": OPSET, "files": digests},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def onnx_model_dir(model_dir: Path) -> Path:
    """The cached ONNX export of ``model_dir``, exported first (in a child process, ~10 s) when
    the cache has none; raises :class:`ConfigError` for a model it cannot export and
    :class:`OnnxExportError` when the export fails."""
    key = model_key(model_dir)
    resolved = model_dir.resolve()  # a packaged model (".../<package>/model") by its package
    name = resolved.parent.name if resolved.name == "model" else resolved.name
    target = cache_dir() / "onnx" / f"{name}-{key[:16]}"
    return build_cached_dir(target, key, lambda tmp: _export_in_child(model_dir, tmp))


def _export_in_child(model_dir: Path, out_dir: Path) -> None:
    command = [sys.executable, "-m", "filters.onnx_export", str(model_dir), str(out_dir)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
                              cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        raise OnnxExportError(f"exporting {model_dir} to ONNX took over {EXPORT_TIMEOUT_S:.0f} s")
    if done.returncode != 0 or not all((out_dir / f).is_file() for f in PRECISIONS.values()):
        raise OnnxExportError(f"exporting {model_dir} to ONNX failed (exit {done.returncode}): "
                              f"{(done.stderr or done.stdout)[-2000:]}")


def _pooled_module(model_dir: Path) -> Any:
    """The transformer wrapped so its forward returns mean-pooled, L2-normalised rows."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, transformer: Any) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled(AutoModel.from_pretrained(str(model_dir)).eval())


def export(model_dir: Path, out_dir: Path) -> None:
    """Write the ONNX files of ``model_dir`` into ``out_dir`` (imports torch)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    check_model_dir(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = torch.ones((2, 8), dtype=torch.int64)
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {i: axis for axis, i in axes.items()}
               for name in ("input_ids", "attention_mask", "token_type_ids")}
    fp32 = out_dir / PRECISIONS["fp32"]
    with torch.no_grad():
        torch.onnx.export(
            _pooled_module(model_dir), (sample, sample, torch.zeros_like(sample)), str(fp32),
            input_names=list(dynamic), output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )
    # per channel: one scale per output column keeps MiniLM's rows within ~0.99 cosine of fp32
    # (one scale per tensor: 0.94 at worst on TOFU questions)
    quantize_dynamic(str(fp32), str(out_dir / PRECISIONS["int8"]), weight_type=QuantType.QInt8,
                     per_channel=True)
    (out_dir / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    settings_file = model_dir / "sentence_bert_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8")) if settings_file.is_file() else {}
    (out_dir / "settings.json").write_text(json.dumps(
        {"max_seq_length": int(settings.get("max_seq_length", 512)), "exporter": EXPORT_VERSION}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="export a sentence-transformers model to ONNX")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    export(args.model_dir, args.out_dir)


if __name__ == "__main__":
    main()
