"""What of an upstream answer's own fields (:class:`proxy.core.types.Extra`) reaches the client.

Without output guards, all of them, unchanged. A policy's output guards read the answer's text
only, so under them the client gets only generated text the guards have seen:
:func:`guarded` withholds the message's (delta's) other fields (``reasoning_content``,
``annotations``, ``audio``, …) and the alternatives in ``logprobs`` (each token's
``top_logprobs``), and a stream releases each event's fields with the piece of text that ends
where the event's text ended (:func:`release`), never before. When a guard replaces the text,
:func:`blocked` keeps the metadata and drops the choice's ``logprobs`` and message fields,
which described the text that was replaced.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from proxy.core.types import Chunk, Extra

# (where an upstream event's text ended in the stream's text, that event's fields)
Pending = deque[tuple[int, Extra]]


def blocked(extra: Extra) -> Extra:
    """``extra`` for a choice whose text a block replaced: its metadata only."""
    if not extra:
        return extra
    return Extra(extra.top, {k: v for k, v in extra.choice.items() if k != "logprobs"})


def guarded(extra: Extra) -> Extra:
    """``extra`` under output guards: of the message's fields only a delta's ``role`` (it
    marks a stream's opening event), ``logprobs`` without alternatives."""
    if not extra:
        return extra
    choice = dict(extra.choice)
    if isinstance(choice.get("logprobs"), dict):
        choice["logprobs"] = _without_alternatives(choice["logprobs"])
    role = {"role": extra.message["role"]} if "role" in extra.message else {}
    return Extra(extra.top, choice, role)


def _without_alternatives(logprobs: dict[str, Any]) -> dict[str, Any]:
    """Chat logprobs (``content`` entries, ``refusal``) or completion logprobs (``tokens``,
    ``top_logprobs``) keeping only the chosen tokens: those are the text the guards read."""
    kept = dict(logprobs)
    if isinstance(kept.get("content"), list):
        kept["content"] = [{**e, "top_logprobs": []} if isinstance(e, dict) else e
                           for e in kept["content"]]
    if "refusal" in kept:
        kept["refusal"] = None  # the message's refusal is withheld, so are its tokens
    if isinstance(kept.get("top_logprobs"), list):
        kept["top_logprobs"] = None
    return kept


def release(text: str, sent: int, limit: int, pending: Pending) -> tuple[list[Chunk], int]:
    """The chunks that release ``text[sent:limit]``, and the new ``sent``. The text is cut
    where a pending event's text ended, and that piece carries the event's fields, so fields
    (token logprobs) never go out before their text; a piece may be empty (an event with
    fields and no text)."""
    chunks: list[Chunk] = []
    while pending and pending[0][0] <= limit:
        end, extra = pending.popleft()
        chunks.append(Chunk(text[sent:end], extra=extra))
        sent = max(sent, end)
    if limit > sent:
        chunks.append(Chunk(text[sent:limit]))
        sent = limit
    return chunks, sent

