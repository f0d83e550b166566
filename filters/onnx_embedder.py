"""The local sentence embedder under ONNX Runtime: ``tokenizers`` in, unit rows out, no torch.

The model is the ONNX export of :mod:`filters.onnx_export` (mean pooling and normalisation are
in its graph). Its fp32 rows equal the torch engine's (cosine >= 0.9999, tested with the real
MiniLM); int8 trades a little of that agreement for about half the time per text. Texts are
tokenised as sentence-transformers does (the model's ``max_seq_length``, padding to the longest
text of a batch) and batched by length, so a batch pads little.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

import numpy as np

from filters.onnx_export import PRECISIONS, onnx_model_dir
from proxy.core.embedded import EMBEDDER_NAME, embedder_path

__all__ = ["OnnxEmbedder", "Precision"]

Precision = Literal["fp32", "int8"]


# the most token pairs (texts x tokens x tokens) one forward pass attends over: 64 texts of 64
# tokens; a batch of long texts is cut smaller, so its attention scores stay a few MB per layer
MAX_ATTENTION_CELLS = 64 * 64 * 64


def _chunks_by_length(ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``ids`` in batches of similar length (shortest first), each at most
    ``batch_size`` texts and :data:`MAX_ATTENTION_CELLS` (one text always fits)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks: list[list[int]] = []
    for i in order:
        width = len(ids[i])  # the longest so far: the batch pads to it
        if chunks and len(chunks[-1]) < batch_size and \
                (len(chunks[-1]) + 1) * width * width <= MAX_ATTENTION_CELLS:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


class OnnxEmbedder:
    """A sentence-transformers model under ONNX Runtime on CPU, exported and loaded on first
    use; safe to share across threads.

    ``num_threads`` (default 1) is ONNX Runtime's intra-op thread count (None: its default, all
    cores); the tokenizer runs in the calling thread.

    int8 runs one text per forward pass: its activations are quantised with one scale per
    tensor (``DynamicQuantizeLinear``), so in a batch a text's row would depend on the texts
    (and padding) beside it, and a guard's verdict on the traffic it was batched with. Alone,
    a text's row is the same whatever else is embedded. fp32 rows do not depend on the batch.
    """

    def __init__(
        self, model: str = EMBEDDER_NAME, *, model_id: str, precision: Precision = "fp32",
        batch_size: int = 64, num_threads: int | None = 1,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.path = embedder_path(model)
        self.model_id = model_id
        self.precision = precision
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        files = onnx_model_dir(self.path)
        settings = json.loads((files / "settings.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(files / "tokenizer.json"))
        tokenizer.enable_truncation(int(settings["max_seq_length"]))
        tokenizer.no_padding()  # padded per batch in _run, to its longest text
        options = onnxruntime.SessionOptions()
        options.enable_cpu_mem_arena = False  # the arena would keep a long batch's peak for good
        if self.num_threads is not None:
            options.intra_op_num_threads = self.num_threads
            options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(files / PRECISIONS[self.precision]), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    def warm_up(self) -> None:
        """Export (first use only) and load the model now rather than on the first request."""
        with self._lock:
            if self._session is None:
                self._load()

    @property
    def dimension(self) -> int:
        """The length of one row."""
        self.warm_up()
        return int(self._session.get_outputs()[0].shape[1])  # static in the export

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (an empty list gives a ``(0, dim)`` array)."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        out = np.empty((len(ids), self.dimension), np.float32)
        batch_size = 1 if self.precision == "int8" else self.batch_size  # see the class docstring
        for chunk in _chunks_by_length(ids, batch_size):
            out[chunk] = self._run([ids[i] for i in chunk])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: np.ndarray = out / np.maximum(norms, 1e-12)
        return normalised

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        """One forward pass over token ids padded to the longest."""
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask,
                 "token_type_ids": np.zeros_like(input_ids)}
        rows: np.ndarray = self._session.run(None, feeds)[0]
        return rows.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.model_id!r}, precision={self.precision!r})"
