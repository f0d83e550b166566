"""The admin API: runtime forget requests ("right to be forgotten") and the audit log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from proxy import protocol
from proxy.auth import client_key, key_fingerprint
from proxy.core.config import ForgetRequestTarget
from proxy.core.errors import InvalidRequestError, NotFoundError, ProxyError
from proxy.core.redaction import redact
from proxy.request_body import body_schema, parse_body, read_json
from proxy.runtime import stored_target
from proxy.store import AuditRecord

log = logging.getLogger("unlearn_proxy.admin")
admin_router = APIRouter(prefix="/admin")
MAX_SEQ = 2**63 - 1  # the largest SQLite integer


class ForgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1)
    target: ForgetRequestTarget


def _policy_or_404(request: Request, name: str) -> None:
    if name not in request.app.state.holder.current.config.policies:
        raise NotFoundError(f"unknown policy {name!r}", param="policy")


def _audit_action(request: Request, admin_key: str | None, action: str, policy: str,
                  target_id: str | None = None) -> None:
    """An admin action in the audit log, with the fingerprint of the admin key."""
    request.app.state.store.append_audit(AuditRecord(
        request_id=protocol.new_id("admin"), action=action, policy=policy, target_id=target_id,
        actor=key_fingerprint(admin_key)))


@admin_router.post("/forget", openapi_extra=body_schema(ForgetBody))
async def add_forget(request: Request) -> dict[str, Any]:
    """Add a forget target to a policy; effective for the next request, durable on return; a
    target that does not compile is rejected (400) and not stored."""
    admin_key = client_key(request, admin=True)
    body = parse_body(ForgetBody, await read_json(request))
    _policy_or_404(request, body.policy)
    holder, store = request.app.state.holder, request.app.state.store
    try:
        stored = await asyncio.to_thread(holder.add_forget, body.policy, body.target, store)
    except ProxyError:  # an unknown policy or a duplicate id, seen under the holder's lock
        raise
    except Exception as exc:  # compiling runs guard builders and the embedder: any failure
        log.warning("forget request %r rejected: %s: %s", body.target.id, type(exc).__name__,
                    redact(str(exc)))
        raise InvalidRequestError(
            f"the forget target cannot be compiled ({type(exc).__name__}): nothing was stored",
            param="target",
        ) from None
    _audit_action(request, admin_key, "forget_add", body.policy, body.target.id)
    return {"object": "forget_request", "status": "active", **stored.as_dict()}


@admin_router.get("/forget")
async def list_forget(
    request: Request, policy: str | None = None, include_withdrawn: bool = False
) -> dict[str, Any]:
    """The runtime forget requests, oldest first; ``skipped`` says what of one the runtime
    leaves out (the document ``path`` entries of a row an older version stored; all of a row
    that is unusable even without them), else null."""
    client_key(request, admin=True)
    rows = request.app.state.store.forget_requests(policy, active_only=not include_withdrawn)
    return {"object": "list",
            "data": [{**row.as_dict(), "skipped": stored_target(row)[1]} for row in rows]}


@admin_router.delete("/forget/{policy}/{target_id}")
async def withdraw_forget(request: Request, policy: str, target_id: str) -> dict[str, Any]:
    """Withdraw a runtime forget request; the target is answered again from the next request.
    The policy is compiled without it before the store records the withdrawal."""
    admin_key = client_key(request, admin=True)
    _policy_or_404(request, policy)
    holder, store = request.app.state.holder, request.app.state.store
    await asyncio.to_thread(holder.withdraw_forget, policy, target_id, store)
    _audit_action(request, admin_key, "forget_withdraw", policy, target_id)
    return {"object": "forget_request", "status": "withdrawn", "policy": policy, "target_id": target_id}


class RetainRemovalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1)
    question: str = Field(min_length=1)


@admin_router.post("/retain/remove", openapi_extra=body_schema(RetainRemovalBody))
async def remove_retain(request: Request) -> dict[str, Any]:
    """Remove a retain example from the policy's ICUL pool (exact ERASE deletion), durably."""
    admin_key = client_key(request, admin=True)
    body = parse_body(RetainRemovalBody, await read_json(request))
    _policy_or_404(request, body.policy)
    holder, store = request.app.state.holder, request.app.state.store
    if not holder.current.policies[body.policy].icul:
        raise InvalidRequestError(f"policy {body.policy!r} has no icul method", param="policy")
    recomputed = await asyncio.to_thread(holder.remove_retain, body.policy, body.question, store)
    _audit_action(request, admin_key, "retain_remove", body.policy)
    stats = [m.stats for m in holder.current.policies[body.policy].icul]
    return {
        "object": "retain_removal",
        "policy": body.policy,
        "recomputed": any(recomputed),
        "deletions": sum(s.deletions for s in stats),
        "recomputes": sum(s.recomputes for s in stats),
    }


@admin_router.get("/audit")
async def audit(request: Request, limit: int = 100, after: int = 0) -> dict[str, Any]:
    """Audit records of blocks and admin actions, oldest first; page with ``after`` (the last
    ``seq`` seen)."""
    client_key(request, admin=True)
    if not 1 <= limit <= 1000:
        raise InvalidRequestError("limit must be between 1 and 1000", param="limit")
    if not 0 <= after <= MAX_SEQ:
        raise InvalidRequestError(f"after must be between 0 and {MAX_SEQ}", param="after")
    return {"object": "list", "data": request.app.state.store.audit(limit=limit, after_seq=after)}
