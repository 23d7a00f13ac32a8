"""`/v1/actions` (what was done to matched items) and `/v1/audit` (everything done, by whom)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from mediaguard.api.deps import get_service, require
from mediaguard.api.matching import ActionOut
from mediaguard.service import Service
from mediaguard.store import TokenInfo

router = APIRouter(prefix="/v1", tags=["actions and audit"])
_staff = require("admin", "reviewer")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    event: str
    subject_type: str
    subject_id: str
    reason: str | None
    result: str
    details: dict[str, Any]


@router.get("/actions", response_model=list[ActionOut])
async def list_actions(
    item_id: int | None = None,
    status: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _: TokenInfo = Depends(_staff),
    service: Service = Depends(get_service),
) -> list[ActionOut]:
    found = await run_in_threadpool(
        service.store.items.actions, item_id=item_id, status=status, limit=limit
    )
    return [ActionOut.of(action) for action in found]


@router.post("/actions/{action_id}/retry", response_model=ActionOut)
async def retry_action(
    action_id: int,
    token: TokenInfo = Depends(require("admin")),
    service: Service = Depends(get_service),
) -> ActionOut:
    """Run a failed action again (e.g. after fixing the SMTP or webhook settings)."""
    return ActionOut.of(await run_in_threadpool(service.retry_action, action_id, actor=token.name))


@router.get("/audit", response_model=list[AuditOut])
async def audit_log(
    before_id: int | None = Query(None, description="Page: entries older than this id."),
    subject_type: str | None = None,
    subject_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _: TokenInfo = Depends(_staff),
    service: Service = Depends(get_service),
) -> list[AuditOut]:
    """The audit log, newest first."""
    entries = await run_in_threadpool(
        service.store.audit.list,
        before_id=before_id,
        limit=limit,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    return [AuditOut(**entry.__dict__) for entry in entries]
