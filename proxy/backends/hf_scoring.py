"""Log-likelihood of a continuation given a context (lm-evaluation-harness semantics).

A pair is tokenised as ``whole = encode(context + continuation)`` and ``ctx = encode(context)``;
the continuation is ``whole[len(ctx):]``, so tokens merging across the boundary are scored as the
model would see them. Trailing whitespace of the context moves onto the continuation first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from proxy.backends.hf_generation import Tokenizer, encode_text, left_pad


@dataclass(frozen=True)
class Score:
    """Summed log-prob of a continuation, its token count and whether greedy decoding yields it."""

    logprob: float
    n_tokens: int
    is_greedy: bool


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """``(context ids, continuation ids)``; raises ValueError for an empty continuation."""
    if not continuation:
        raise ValueError("loglikelihood needs a non-empty continuation")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    ctx = encode_text(tokenizer, context)
    if not ctx:  # no BOS and no context: condition on a prefix token (as lm-eval does)
        prefix = tokenizer.bos_token_id
        ctx = [tokenizer.eos_token_id if prefix is None else prefix]
        return ctx, list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    whole = encode_text(tokenizer, context + continuation)
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx) :]
    # The boundary merged into the context's last token: score the continuation on its own.
    return ctx, list(tokenizer(continuation, add_special_tokens=False)["input_ids"])


def _score_batch(
    model: PreTrainedModel, pad_id: int, batch: Sequence[tuple[list[int], list[int]]]
) -> list[Score]:
    """Score one batch with a single forward pass, keeping logits only where needed."""
    inputs = [(ctx + cont)[:-1] for ctx, cont in batch]
    ids, mask = left_pad(inputs, pad_id, model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(len(cont) for _, cont in batch)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
    ).logits
    scores = []
    for row, (_, cont) in zip(logits, batch, strict=True):
        row_logits = row[keep - len(cont) :].float()
        target = torch.tensor(cont, device=row_logits.device)
        logprobs = torch.log_softmax(row_logits, dim=-1)
        picked = logprobs.gather(-1, target[:, None]).sum().item()
        is_greedy = bool((row_logits.argmax(-1) == target).all().item())
        scores.append(Score(picked, len(cont), is_greedy))
    return scores


def score_pairs(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int,
) -> list[Score]:
    """Score ``(context, continuation)`` pairs in batches, longest first; results in input order."""
    encoded = [encode_pair(tokenizer, ctx, cont) for ctx, cont in pairs]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
    results: dict[int, Score] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = [encoded[i] for i in chunk]
        scores = _score_batch(model, tokenizer.pad_token_id, batch)
        results.update(zip(chunk, scores, strict=True))
    return [results[i] for i in range(len(encoded))]
