"""The transformers backend on the real embedded Gemma 3 270M (CPU, greedy)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends import hf_generation as gen
from proxy.backends.base import Backend
from proxy.core.types import Chunk, Generation, GenerationParams
from proxy.backends.transformers_backend import TransformersBackend
from proxy.core.config import TransformersModelConfig
from proxy.core.errors import ConfigError, UnsupportedError

pytestmark = pytest.mark.slow

PROMPT = "Harry Potter was written by"
GREEDY = GenerationParams(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    cfg = TransformersModelConfig(backend="transformers", device="cpu", batch_size=3)
    return TransformersBackend.from_config(cfg)


async def _collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


def test_implements_the_backend_protocol(backend: TransformersBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.capabilities.logprobs and backend.capabilities.weights
    assert backend.info is not None and backend.info.dtype == "float32"
    assert "gemma-3-270m" in repr(backend)


async def test_greedy_completion_knows_the_author(backend: TransformersBackend) -> None:
    result = await backend.complete(PROMPT, GREEDY)
    assert "Rowling" in result.text
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 8
    assert result.usage.prompt_tokens == backend.count_tokens(PROMPT) + 1  # + BOS


def test_batched_generation_equals_unbatched(backend: TransformersBackend) -> None:
    prompts = [PROMPT, "The capital of France is", "Water boils at a temperature of one hundred"]
    params = GenerationParams(max_tokens=8, temperature=0)
    batched = backend.generate(prompts, params)
    single = [backend.generate([p], params)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.usage for g in batched] == [g.usage for g in single]


def test_loglikelihood_prefers_the_true_author(backend: TransformersBackend) -> None:
    pairs = [(PROMPT, " J.K. Rowling"), (PROMPT, " Stephen King")]
    (true_lp, true_greedy), (false_lp, false_greedy) = backend.loglikelihood(pairs)
    assert true_lp > false_lp
    assert true_lp < 0
    assert true_greedy and not false_greedy


def test_loglikelihood_is_batch_invariant(backend: TransformersBackend) -> None:
    pairs = [
        (PROMPT + " ", "J.K. Rowling"),  # the trailing space moves onto the continuation
        (PROMPT, " J.K. Rowling"),
        ("Q: What is two plus two?\nA:", " Four, obviously."),
        ("", "Hello"),
    ]
    batched = backend.loglikelihood_tokens(pairs)
    assert batched[0] == batched[1]
    single = [backend.loglikelihood_tokens([p])[0] for p in pairs[1:]]
    for (lp_b, n_b), (lp_s, n_s) in zip(batched[1:], single, strict=True):
        assert n_b == n_s
        assert lp_b == pytest.approx(lp_s, abs=1e-3)


async def test_stream_concatenates_to_the_completion(backend: TransformersBackend) -> None:
    chunks = await _collect(backend.stream_complete(PROMPT, GREEDY))
    whole = await backend.complete(PROMPT, GREEDY)
    assert "".join(c.text for c in chunks) == whole.text
    assert len(chunks) > 2
    assert chunks[-1].finish_reason == whole.finish_reason
    assert chunks[-1].usage == whole.usage
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_stop_strings_truncate(backend: TransformersBackend) -> None:
    params = GenerationParams(max_tokens=8, temperature=0, stop=("Rowling", "zzz"))
    result = await backend.complete(PROMPT, params)
    assert result.finish_reason == "stop"
    assert "Rowling" not in result.text and "J.K." in result.text
    chunks = await _collect(backend.stream_complete(PROMPT, params))
    assert "".join(c.text for c in chunks) == result.text
    assert chunks[-1].finish_reason == "stop"


async def test_chat_with_system_prompt_and_stream(backend: TransformersBackend) -> None:
    messages = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": [{"type": "text", "text": "Who wrote Harry Potter?"}]},
    ]
    assert "Answer in one short sentence." in backend.render_chat(messages)
    params = GenerationParams(max_tokens=16, temperature=0)
    result = await backend.chat(messages, params)
    assert "Rowling" in result.text and result.text == result.text.strip()
    chunks = await _collect(backend.stream_chat(messages, params))
    assert "".join(c.text for c in chunks) == result.text


def test_prefill_continues_the_assistant_turn(backend: TransformersBackend) -> None:
    messages = [
        {"role": "user", "content": "Who wrote Harry Potter?"},
        {"role": "assistant", "content": "Harry Potter was written by"},
    ]
    assert backend.render_chat(messages).endswith("Harry Potter was written by")
    result = backend.generate_chat([messages], GenerationParams(max_tokens=6, temperature=0))[0]
    assert result.text.startswith(" J.K. Rowling")  # the separating space is kept


async def test_abandoned_stream_stops_generating(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[Generation] = []
    worker = backend._stream_worker

    def spy(*args: Any) -> Generation:
        finished.append(worker(*args))
        return finished[-1]

    monkeypatch.setattr(backend, "_stream_worker", spy)
    stream = backend.stream_complete(PROMPT, GenerationParams(max_tokens=200, temperature=0))
    assert (await anext(stream)).text
    await stream.aclose()
    assert (await backend.complete(PROMPT, GenerationParams(max_tokens=1))).usage
    for _ in range(100):
        if finished:
            break
        await asyncio.sleep(0.1)
    assert finished and finished[0].usage.completion_tokens < 20


GEMMA_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_chat_template_merges_system_and_prefills(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend.tokenizer, "chat_template", GEMMA_LIKE_TEMPLATE)
    monkeypatch.setattr(backend, "uses_transcript", False)
    system = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "Hi"}
    text = backend.render_chat([system, user])
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert gen.encode_text(backend.tokenizer, text).count(backend.tokenizer.bos_token_id) == 1
    prefilled = backend.render_chat([user, {"role": "assistant", "content": "Hello"}])
    assert prefilled.endswith("<start_of_turn>model\nHello")


def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    params = GenerationParams(max_tokens=4, temperature=1.0, top_p=0.9, seed=7)
    first = backend.generate([PROMPT], params)
    assert backend.generate([PROMPT], params) == first


def test_n_above_one_is_unsupported(backend: TransformersBackend) -> None:
    with pytest.raises(UnsupportedError, match="n=2"):
        backend.generate([PROMPT], GenerationParams(n=2))


@pytest.mark.parametrize("fields", [{"logprobs": True}, {"logprobs": 0}, {"top_logprobs": 3}])
async def test_generation_logprobs_are_refused_by_name(
    backend: TransformersBackend, fields: dict[str, Any]
) -> None:
    """Its log-probs serve the harness's scoring; a request asking them of a generation gets a
    400 naming the field (never an answer without them)."""
    params = GenerationParams(max_tokens=2, extra=fields)
    with pytest.raises(UnsupportedError) as info:
        await backend.complete(PROMPT, params)
    assert info.value.param == next(iter(fields))
    with pytest.raises(UnsupportedError):
        await _collect(backend.stream_chat([{"role": "user", "content": "Hi"}], params))
    assert (await backend.complete(PROMPT, GenerationParams(max_tokens=1, extra={
        "logprobs": False, "top_logprobs": 0}))).text is not None


def test_missing_model_path_names_the_field() -> None:
    cfg = TransformersModelConfig(backend="transformers", model_path="/nonexistent/model")
    with pytest.raises(ConfigError, match="model_path"):
        TransformersBackend.from_config(cfg)
