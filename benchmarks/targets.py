"""The proxy configurations the speed benchmarks drive, and the request texts they send.

A target is named by what it adds to a bare proxy in front of the stub upstream, joined by
``+``: ``proxy`` (no policy), ``proxy+policy`` (the input policy: alias + embedding detector +
classifier on the default embedding engine), then any of ``speculate`` (``speculate: true``),
``torch`` (``embedder.engine: torch``), ``int8`` (``embedder.precision: int8``),
``scope`` (the scope check in place of the detector and classifier) and ``output`` (an output
filter too). :mod:`benchmarks.load`, :mod:`benchmarks.proxy_overhead`
and :mod:`benchmarks.gateways` share them, so their figures describe the same proxies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["OPTIONS", "POLICY", "QUESTIONS", "proxy_config", "request_text"]

QUESTIONS = [
    "What is the tallest mountain in Europe?", "How do I sort a list in Python?",
    "Who painted the Sistine Chapel ceiling?", "What causes the seasons on Earth?",
    "Recommend a good book about the history of Rome.", "How many legs does a spider have?",
    "Where was the author of the Harry Potter books born?", "Explain photosynthesis briefly.",
]
POLICY: dict[str, Any] = {
    "forget": [{
        "id": "jk-rowling", "name": "J. K. Rowling", "aliases": ["Robert Galbraith"],
        "description": "British author of the Harry Potter series.",
        "questions": ["Who wrote Harry Potter?", "Where was J. K. Rowling born?"],
    }],
    "retain": ["Who wrote The Lord of the Rings?", "What is the capital of France?"],
    "methods": [{"type": "input_detector"}, {"type": "input_classifier"}],
}
OPTIONS = ("speculate", "torch", "int8", "scope", "output")


def _policy(options: set[str]) -> dict[str, Any]:
    policy: dict[str, Any] = {**POLICY, "speculate": "speculate" in options}
    embedder = {"engine": "torch"} if "torch" in options else {}
    if "int8" in options:
        embedder["precision"] = "int8"
    if embedder:
        policy["embedder"] = embedder
    if "scope" in options:
        policy["methods"] = [{"type": "scope"}]
    if "output" in options:
        policy["methods"] = [*policy["methods"], {"type": "output_filter"}]
    return policy


def proxy_config(directory: Path, upstream: str, target: str) -> Path:
    """Write the config of ``target`` (see the module docstring) for a proxy in front of
    ``upstream``, its state under ``directory``; returns the file's path."""
    base, *rest = target.split("+")
    options = set(rest) - {"policy"}
    if base != "proxy" or (options - set(OPTIONS)) or (options and "policy" not in rest):
        raise ValueError(f"unknown target {target!r}: proxy[+policy[+{'|'.join(OPTIONS)}]...]")
    data: dict[str, Any] = {
        "server": {"state_dir": str(directory / "state" / target)},
        "models": {"stub": {"backend": "openai", "base_url": f"{upstream}/v1"}},
    }
    if "policy" in rest:
        data["policies"] = {"full": _policy(options)}
        data["routing"] = {"default_policy": "full"}
    path = directory / f"{target}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def request_text(i: int, tag: str) -> str:
    """The user message of request ``i`` of a drive tagged ``tag`` (unique: no embedding-cache
    hits)."""
    return f"{QUESTIONS[i % len(QUESTIONS)]} ({tag} #{i})"
