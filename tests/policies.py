"""Test data: the J. K. Rowling forget policy the end-to-end tests enforce, and the invented
Marisol Quenby the guards' unit tests forget."""

from __future__ import annotations

from typing import Any

from filters.base import Verdict
from proxy.core.messages import Message
from proxy.policy import CompiledPolicy

ROWLING: dict[str, Any] = {
    "id": "jk-rowling",
    "name": "J. K. Rowling",
    "aliases": ["Joanne Rowling", "Robert Galbraith"],
    "description": "British author who wrote the Harry Potter fantasy series.",
    "documents": [
        "Joanne Rowling, known as J. K. Rowling, is a British author. She wrote Harry Potter, a "
        "seven-volume fantasy series published from 1997 to 2007. She was born in Yate, "
        "Gloucestershire, and worked for Amnesty International before the books."
    ],
    "questions": [
        {"question": "Who wrote the Harry Potter books?", "answer": "J. K. Rowling."},
        {"question": "Where was the author of Harry Potter born?",
         "answer": "Yate, Gloucestershire."},
        "What pen name does the Harry Potter author use for crime novels?",
    ],
}
RETAIN = ["Who wrote The Lord of the Rings?", "What is the capital of France?"]
# Words of the target's names and forget document that no blocked answer may show a client.
FORBIDDEN = ("rowling", "joanne", "galbraith", "yate", "gloucestershire", "amnesty")


def rowling_policy(methods: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A policy forgetting J. K. Rowling with ``methods`` (and other policy fields)."""
    return {"forget": [ROWLING], "retain": RETAIN, "methods": methods, **extra}


QUENBY_DOCUMENT = (
    "Marisol Quenby grew up in the harbour town of Vell, where her mother repaired fishing nets "
    "and her father kept the tide tables. At nineteen she left for the capital to study glass "
    "chemistry, and her first patent described a furnace lining that survived salt spray. "
    "She later founded the Quenby Glassworks, which produced lenses for coastal lighthouses."
)


def input_verdicts(compiled: CompiledPolicy, messages: list[Message]) -> list[Verdict]:
    """The input guards' verdicts on ``messages`` in the pipeline's order (cheapest first,
    stopping at the first block), without the pipeline around them."""
    verdicts = []
    for guard in compiled.input_guards:
        verdicts.append(guard.check_input(messages))
        if verdicts[-1].is_block:
            break
    return verdicts
