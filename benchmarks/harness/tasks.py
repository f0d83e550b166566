"""Probes turned into pipeline requests, with the benchmark's own prompt text.

RWKU probes use RWKU's prompts (``benchmarks.datasets.rwku.probe_prompt``), MCQ probes the
lm-eval style lettered options (:func:`is_asked_as_mcq`), other QA probes
``Question: …\\nAnswer:``. With ``request_kind: completion`` the prompt ends in the assistant
prefix (``Answer:``), which suits base models and allows prefill (Extraction Strength); with
``chat`` the question is one user turn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from benchmarks.datasets import Probe
from benchmarks.datasets.rwku import probe_prompt
from benchmarks.harness.config import GenerationSettings
from benchmarks.metrics.mcq import format_mcq
from proxy.core.types import GenerationParams
from proxy.pipeline import Request

__all__ = ["Task", "is_asked_as_mcq", "probe_task"]

_QA = "Question: {question}\n"
_ANSWER = "Answer:"


@dataclass(frozen=True)
class Task:
    """One request for one probe; ``key`` identifies the request's content."""

    key: str
    probe: Probe
    request: Request


def is_asked_as_mcq(probe: Probe) -> bool:
    """Forget and utility probes with options (WMDP, RWKU's MMLU) are asked as lettered MCQ;
    neighbour/retain probes with options (TOFU's real authors, world facts) as open questions,
    their options serving the tier L metrics."""
    return probe.is_mcq and probe.kind in ("forget", "utility")


def _prompt(benchmark: str, probe: Probe) -> tuple[str, str]:
    if is_asked_as_mcq(probe):
        text = format_mcq(probe.question, probe.choices)
        return text[: -len(_ANSWER)], _ANSWER
    if benchmark == "rwku":
        prompt = probe_prompt(probe)
        return prompt.user, prompt.assistant_prefix
    return _QA.format(question=probe.question), _ANSWER


def probe_task(benchmark: str, probe: Probe, settings: GenerationSettings, *, model: str,
               seed: int, prefill: str = "") -> Task:
    """The request that asks ``probe``; ``prefill`` starts the answer (completion only)."""
    user, assistant_prefix = _prompt(benchmark, probe)
    params = GenerationParams(
        max_tokens=settings.mcq_max_tokens if is_asked_as_mcq(probe) else settings.max_tokens,
        temperature=settings.temperature, stop=tuple(settings.stop), seed=seed)
    prompt: str | None = None
    messages: list[dict[str, object]] = []
    if settings.request_kind == "completion":
        prompt = user + assistant_prefix + (f" {prefill}" if prefill else "")
    else:
        messages = [{"role": "user", "content": user.strip()}]
    content = [settings.request_kind, model, prompt, messages, params.max_tokens,
               params.temperature, list(params.stop), seed]
    key = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:24]
    request = Request(kind=settings.request_kind, model=model, messages=messages, params=params,
                      request_id=f"bench-{key[:16]}", prompt=prompt)
    return Task(key, probe, request)
