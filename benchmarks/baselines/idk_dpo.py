"""IdkDPO: DPO with a refusal as the preferred answer and the true answer as the dispreferred one.

Rafailov et al. 2023, *Direct Preference Optimization* (arXiv:2305.18290); refusal targets as in
Maini et al. 2024, *TOFU: A Task of Fictitious Unlearning for LLMs* (arXiv:2401.06121). Per forget
QA pair, with r = log π_θ − log π_ref summed over answer tokens:
loss = −(2/β)·log σ(β·(r_refusal − r_true)) (open-unlearning's scaling), β = 0.1, γ = α = 1.
Refusals default to a short built-in list; pass TOFU's ``idontknow.jsonl`` lines to match it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.baselines.data import Batch, Example, Item, Tokenizer, encode_qa, qa_pair
from benchmarks.baselines.errors import BaselineConfigError, BaselineError
from benchmarks.baselines.losses import reference_nll, sequence_nll
from benchmarks.baselines.npo import NPO, NPOConfig

DEFAULT_REFUSALS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is something I can't answer.",
    "I'm afraid I don't have that knowledge.",
    "I cannot say.",
)


@dataclass(frozen=True, kw_only=True)
class IdkDPOConfig(NPOConfig):
    """DPO's ``beta`` plus the refusal answers preferred over the true ones."""

    refusals: tuple[str, ...] = DEFAULT_REFUSALS

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.refusals, str) or not self.refusals:
            raise BaselineConfigError("refusals must be a non-empty sequence of strings")


class IdkDPO(NPO):
    """IdkDPO: prefer a refusal over the true answer, relative to the original model."""

    name = "idk_dpo"
    config_cls = IdkDPOConfig
    config: IdkDPOConfig
    alternate_reference: Tensor | None = None

    def encode_forget(self, tokenizer: Tokenizer, items: Sequence[Item]) -> list[Example]:
        """Encode each QA pair with an ``alternate`` copy answered by a seeded-random refusal."""
        rng = random.Random(self.config.seed)
        examples = []
        for item in items:
            question, answer = qa_pair(item)
            example = encode_qa(tokenizer, question, answer, max_length=self.config.max_length)
            example["alternate"] = encode_qa(
                tokenizer,
                question,
                rng.choice(self.config.refusals),
                max_length=self.config.max_length,
            )
            examples.append(example)
        return examples

    def prepare(self, model: nn.Module, forget: Sequence[Example], *, pad_id: int) -> None:
        super().prepare(model, forget, pad_id=pad_id)
        self.alternate_reference = reference_nll(
            model,
            [e["alternate"] for e in forget],
            batch_size=self.config.batch_size,
            pad_id=pad_id,
        )

    def forget_losses(self, model: nn.Module, forget: Batch) -> tuple[Tensor, Tensor]:
        if self.reference is None or self.alternate_reference is None:
            raise BaselineError("IdkDPO.prepare() must run before the first loss")
        nll, count = sequence_nll(model, forget)
        alt_nll, _ = sequence_nll(model, forget["alternate"])
        index = forget["index"].cpu()
        lose = self.reference[index].to(nll.device) - nll
        win = self.alternate_reference[index].to(nll.device) - alt_nll
        beta = self.config.beta
        return -2 / beta * F.logsigmoid(beta * (win - lose)), nll / count.clamp(min=1)
