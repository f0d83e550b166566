"""What of an upstream answer's own fields (:class:`proxy.core.types.Extra`) reaches the client.

Without output guards, all of them, unchanged. Under a policy's output guards the client gets
only what the guards have read (:mod:`proxy.release`): :func:`guarded` keeps the message's
(delta's) tool calls and its role, and withholds its other fields (``reasoning_content``,
``annotations``, ``audio``, …) and the alternatives in ``logprobs`` (each token's
``top_logprobs``); a stream releases each event's fields with the last of its text
(:class:`proxy.release.HeldChoice`), never before. When a guard replaces the text,
:func:`blocked` keeps the metadata and drops the choice's ``logprobs`` and message fields
(tool calls included), which described what was replaced.
"""

from __future__ import annotations

from typing import Any

from proxy.core.types import Extra

# the message (delta) fields that pass under output guards: those the guards read (tool
# calls), the role (it marks a stream's opening event) and a null content (an answer of tool
# calls only, as the upstream wrote it)
_GUARDED_MESSAGE = ("role", "content", "tool_calls", "function_call")


def blocked(extra: Extra) -> Extra:
    """``extra`` for a choice whose text a block replaced: its metadata only."""
    if not extra:
        return extra
    return Extra(extra.top, {k: v for k, v in extra.choice.items() if k != "logprobs"})


def guarded(extra: Extra) -> Extra:
    """``extra`` under output guards: of the message's fields those the guards read or that
    hold no text, ``logprobs`` without alternatives."""
    if not extra:
        return extra
    choice = dict(extra.choice)
    if isinstance(choice.get("logprobs"), dict):
        choice["logprobs"] = _without_alternatives(choice["logprobs"])
    message = {k: v for k, v in extra.message.items() if k in _GUARDED_MESSAGE}
    return Extra(extra.top, choice, message)


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
