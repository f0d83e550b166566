"""The embeddings request model, its response encoding and the embedded MiniLM's limits."""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import pytest

from proxy.backends.embeddings import LocalEmbeddings
from proxy.backends.openai_compat import OpenAICompatBackend
from proxy.core.errors import InvalidRequestError, UpstreamError
from proxy.embeddings import MAX_INPUTS, EmbeddingRequest, embedding_list
from proxy.request_body import parse_body

VALID = {
    "string": ("hello", ["hello"]),
    "empty string": ("", [""]),
    "strings": (["a", "b"], ["a", "b"]),
    "token ids": ([1, 0, 99999999999], None),
    "token-id lists": ([[1], [2, 3]], None),
    "most inputs": (["x"] * MAX_INPUTS, ["x"] * MAX_INPUTS),
}
INVALID = {
    "empty list": [],
    "too many": ["x"] * (MAX_INPUTS + 1),
    "mixed": ["a", 1],
    "negative id": [-1],
    "boolean ids": [True, False],
    "float ids": [1.0],
    "empty token list": [[]],
    "nested strings": [["a"]],
    "object": {"text": "a"},
    "number": 3,
    "null": None,
}


@pytest.mark.parametrize(("value", "texts"), list(VALID.values()), ids=list(VALID))
def test_valid_inputs_and_their_texts(value: Any, texts: list[str] | None) -> None:
    assert parse_body(EmbeddingRequest, {"model": "m", "input": value}).texts == texts


@pytest.mark.parametrize("value", list(INVALID.values()), ids=list(INVALID))
def test_invalid_inputs_are_a_400_naming_input(value: Any) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(EmbeddingRequest, {"model": "m", "input": value})
    assert raised.value.param == "input"


@pytest.mark.parametrize(("field", "value"), [
    ("encoding_format", "hex"), ("dimensions", 0), ("dimensions", "8"), ("dimensions", True),
    ("user", 7), ("model", ""),
])
def test_invalid_fields_are_a_400_naming_them(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(EmbeddingRequest, {"model": "m", "input": "a", field: value})
    assert raised.value.param == field


def test_unknown_fields_are_kept() -> None:
    parsed = parse_body(EmbeddingRequest, {"model": "m", "input": "a", "vendor": {"x": 1}})
    assert parsed.model_extra == {"vendor": {"x": 1}}


def test_base64_is_little_endian_float32() -> None:
    vectors = np.array([[0.5, -1.25, 3.0], [1e-8, 0.0, -0.0]], dtype=np.float32)
    floats = embedding_list("m", vectors, 7, "float")
    encoded = embedding_list("m", vectors, 7, "base64")
    assert floats["data"][0] == {"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}
    for row, item in zip(vectors, encoded["data"], strict=True):
        raw = base64.b64decode(item["embedding"])
        assert raw == struct.pack("<3f", *row.tolist())
        assert list(struct.unpack("<3f", raw)) == floats["data"][item["index"]]["embedding"]
    assert list(encoded) == ["object", "data", "model", "usage"]
    assert encoded["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


class _Recorder:
    model_id = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail:
            raise RuntimeError("the worker exited")
        self.calls.append(texts)
        return np.ones((len(texts), 384), dtype=np.float32)


def test_minilm_counts_tokens_and_refuses_what_it_would_cut() -> None:
    fake = _Recorder()
    local = LocalEmbeddings(fake)
    assert (local.max_tokens, local.dimensions) == (254, 384)
    _, tokens = local.embed(["hello world", ""])
    assert tokens == 2 and fake.calls == [["hello world", ""]]
    _, tokens = local.embed(["word " * 254])
    assert tokens == 254
    with pytest.raises(InvalidRequestError) as raised:
        local.embed(["fine", "word " * 255])
    assert raised.value.param == "input" and "input[1]" in raised.value.message
    assert len(fake.calls) == 2  # nothing embedded for the refused request


def test_an_embedder_failure_is_a_502() -> None:
    with pytest.raises(UpstreamError):
        LocalEmbeddings(_Recorder(fail=True)).embed(["hello"])


def test_the_upstream_call_uses_the_chat_backends_transport() -> None:
    """proxy.backends.embeddings posts through this method (client, key, timeouts, errors)."""
    assert callable(getattr(OpenAICompatBackend, "_request", None))
