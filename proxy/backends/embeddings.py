"""Embeddings for ``POST /v1/embeddings``: an OpenAI-compatible upstream's, passed through, or the
embedded MiniLM's for the embedded engines (llama.cpp, transformers), which have none of their own.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np

from filters.embedder import Embedder, build_embedder
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.core.config import EmbedderConfig
from proxy.core.embedded import EMBEDDER_NAME, embedder_path
from proxy.core.errors import InvalidRequestError, UpstreamError

log = logging.getLogger("unlearn_proxy.embeddings")


async def upstream_embeddings(backend: OpenAICompatBackend, body: dict[str, Any]) -> bytes:
    """The upstream's ``/embeddings`` answer to ``body``, byte for byte. Sent like a chat request
    (the backend's client, key, timeouts and error mapping: an upstream 4xx is the client's
    error, a 5xx or broken connection 502, a timeout 504); 502 for a body that is not a JSON
    object."""
    async with backend._request("/embeddings", body, streamed=False) as response:
        raw = await response.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise UpstreamError("the upstream model returned a body that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError("the upstream model returned a body that is not a JSON object")
    return raw


class LocalEmbeddings:
    """The embedded MiniLM (the process-wide embedder the policies share) with its tokenizer,
    which counts the usage and refuses a text longer than the model reads (it would be cut)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        from tokenizers import Tokenizer

        path = embedder_path(EMBEDDER_NAME)
        self._embedder = embedder or build_embedder(EmbedderConfig())
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        settings = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_tokens = int(settings["max_seq_length"]) - 2  # [CLS] and [SEP]
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        self.dimensions = int(pooling["word_embedding_dimension"])

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """The unit float32 rows of ``texts`` and their token count; a 400 naming ``input``
        for a text longer than the model reads, 502 when the embedder fails."""
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        counts = [len(e.ids) for e in encodings]
        for i, count in enumerate(counts):
            if count > self.max_tokens:
                raise InvalidRequestError(
                    f"input[{i}] is {count} tokens long; this model reads at most "
                    f"{self.max_tokens} tokens of each input", param="input")
        try:
            vectors = self._embedder.embed(list(texts))
        except Exception as exc:  # an outage or a broken model: a server fault, not the client's
            log.warning("the embedded embedding model failed: %s", exc)
            raise UpstreamError(f"the embedding model failed ({type(exc).__name__})") from None
        return vectors, sum(counts)

    def __repr__(self) -> str:
        return f"LocalEmbeddings({self._embedder!r})"


_LOCAL: list[LocalEmbeddings] = []
_LOCAL_LOCK = threading.Lock()


def local_embeddings() -> LocalEmbeddings:
    """The process-wide :class:`LocalEmbeddings`, made on first use (blocking: call it from a
    worker thread)."""
    with _LOCAL_LOCK:
        if not _LOCAL:
            _LOCAL.append(LocalEmbeddings())
        return _LOCAL[0]
