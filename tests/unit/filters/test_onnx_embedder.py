"""The ONNX Runtime engine: the torch engine's rows from the real MiniLM, a content-keyed export
cache, clear errors for a model it cannot export, and a worker process without torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import psutil
import pytest
from pydantic import ValidationError

from filters.embedder import LocalEmbedder, local_embedder, local_model_id
from filters.embedding_worker import ProcessEmbedder
from filters.onnx_embedder import MAX_ATTENTION_CELLS, OnnxEmbedder, _chunks_by_length
from filters.onnx_export import PRECISIONS, OnnxExportError, model_key, onnx_model_dir
from proxy.core.cache_dirs import is_complete
from proxy.core.config import EmbedderConfig
from proxy.core.embedded import EMBEDDER_NAME, embedder_path
from proxy.core.errors import ConfigError

TEXTS = [
    "How old is the Moon?", "Where was J. K. Rowling born?", "Best pizza dough", "",
    "Ünïcödé, 東京 and an emoji 🎉 in one sentence.",
    "a long text " * 200,  # past max_seq_length (256 tokens): truncated as torch truncates it
    *(f"Question {i} about topic {i % 5}, with {'more words ' * (i % 7)}in it" for i in range(30)),
]


@pytest.fixture(scope="module")
def torch_rows() -> np.ndarray:
    return LocalEmbedder().embed(TEXTS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_fp32_rows_are_the_torch_engines(torch_rows: np.ndarray) -> None:
    """Batched by length in chunks of 8 (texts reordered and put back) and one at a time."""
    embedder = OnnxEmbedder(model_id="m", batch_size=8)
    batched = embedder.embed(TEXTS)
    singles = np.concatenate([embedder.embed([text]) for text in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert _cosines(batched, torch_rows).min() >= 0.9999
    assert _cosines(singles, torch_rows).min() >= 0.9999
    assert embedder.embed([]).shape == (0, 384)


def test_int8_rows_are_close_but_not_the_same(torch_rows: np.ndarray) -> None:
    rows = OnnxEmbedder(model_id="m", precision="int8").embed(TEXTS)
    cosines = _cosines(rows, torch_rows)
    assert cosines.mean() > 0.98 and cosines.min() < 0.9999  # a different file: quantised weights
    assert rows[0] @ rows[1] < rows[0] @ OnnxEmbedder(model_id="m", precision="int8").embed(
        ["What is the age of the Moon?"])[0]  # still semantic: paraphrase closer than another topic


def test_ids_tell_int8_apart_and_fp32_engines_share_one() -> None:
    base = local_model_id(EMBEDDER_NAME)
    assert local_embedder(engine="torch").model_id == local_embedder().model_id == base
    assert local_embedder(precision="int8").model_id == f"{base}+int8"
    with pytest.raises(ConfigError, match="fp32 only"):
        local_embedder(engine="torch", precision="int8")
    with pytest.raises(ValidationError, match="fp32 only"):
        EmbedderConfig(engine="torch", precision="int8")
    assert (EmbedderConfig().engine, EmbedderConfig().precision) == ("onnx", "fp32")


def test_the_export_is_cached_under_a_key_of_the_model_files(tmp_path: Path) -> None:
    model = embedder_path(EMBEDDER_NAME)
    first = onnx_model_dir(model)
    assert is_complete(first) and onnx_model_dir(model) == first
    assert all((first / name).is_file() for name in PRECISIONS.values())
    copy = tmp_path / "copy"  # the same files, but for one byte of the tokenizer
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "model.safetensors").symlink_to(model / "model.safetensors")
    assert model_key(copy) == model_key(model)
    (copy / "tokenizer.json").write_text((model / "tokenizer.json").read_text() + " ")
    assert model_key(copy) != model_key(model)


def test_a_model_the_engine_cannot_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no config\.json, tokenizer\.json, model\.safetensors"):
        OnnxEmbedder(str(tmp_path), model_id="m").warm_up()
    model = embedder_path(EMBEDDER_NAME)
    shutil.copytree(model, tmp_path / "cls", ignore=shutil.ignore_patterns("model.safetensors"))
    pooling = tmp_path / "cls" / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"pooling_mode_cls_token": True}))
    (tmp_path / "cls" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="does not mean-pool.*engine: torch"):
        OnnxEmbedder(str(tmp_path / "cls"), model_id="m").warm_up()
    with pytest.raises(ConfigError, match="neither"):
        OnnxEmbedder("/no/such/model", model_id="m")


@pytest.mark.slow  # the exporter's child process imports torch
def test_weights_that_do_not_load_fail_the_export_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken"
    shutil.copytree(embedder_path(EMBEDDER_NAME), broken,
                    ignore=shutil.ignore_patterns("model.safetensors"))
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(OnnxExportError, match="failed"):
        onnx_model_dir(broken)
    assert list((tmp_path / "cache" / "onnx").iterdir()) == []  # no half-written entry


def _loads_torch(pid: int | None) -> bool:
    assert pid is not None
    return any("libtorch" in Path(m.path).name for m in psutil.Process(pid).memory_maps())


@pytest.mark.slow  # two worker processes, one of them loading torch
def test_the_onnx_worker_runs_without_torch(torch_rows: np.ndarray) -> None:
    workers = {engine: ProcessEmbedder(EMBEDDER_NAME, engine=engine, precision="fp32")
               for engine in ("onnx", "torch")}
    try:
        rows = {engine: worker.embed(TEXTS) for engine, worker in workers.items()}
        assert not _loads_torch(workers["onnx"].pid)
        assert _loads_torch(workers["torch"].pid)  # the check sees torch where it is
    finally:
        for worker in workers.values():
            worker.close()
    assert _cosines(rows["onnx"], torch_rows).min() >= 0.9999
    np.testing.assert_allclose(rows["torch"], torch_rows, atol=1e-5)


def test_batches_are_cut_by_size_and_attention_cells() -> None:
    lengths = [5, 256, 10, 64, 64, 100, *range(1, 200)]
    chunks = _chunks_by_length([[0] * n for n in lengths], 16)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        width = max(lengths[i] for i in chunk)
        assert len(chunk) <= 16 and (len(chunk) == 1 or len(chunk) * width**2 <= MAX_ATTENTION_CELLS)
    assert [len(c) for c in _chunks_by_length([[0] * 16] * 40, 16)] == [16, 16, 8]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_texts_row_does_not_depend_on_its_batch(precision: str) -> None:
    """int8 quantises a pass's activations with one scale: batched, a row would move with its
    neighbours (by up to 0.03 per element on these texts); it runs each text alone."""
    embedder = OnnxEmbedder(model_id="m", precision=precision)  # type: ignore[arg-type]
    alone = np.concatenate([embedder.embed([text]) for text in TEXTS])
    np.testing.assert_allclose(embedder.embed(TEXTS), alone, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(TEXTS[::-1])[::-1], alone, atol=1e-5)
