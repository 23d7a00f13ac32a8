"""`/v1/review`: the reviewers' queue, soft locks and decisions (the `reviewer` role)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.actions import AuditOut
from mediaguard.api.deps import get_service, require
from mediaguard.api.media import ItemMatchOut, MediaOut
from mediaguard.api.reports import ReportOut
from mediaguard.review import MAX_BULK, MAX_NOTES, QueueEntry
from mediaguard.service import Service
from mediaguard.store import TokenInfo
from mediaguard.store.items import ActionInfo, ItemInfo, MatchRecord
from mediaguard.store.review import DecisionAction, DecisionInfo, LockInfo

router = APIRouter(prefix="/v1/review", tags=["review"])
_reviewer = require("reviewer")


class LockOut(BaseModel):
    reviewer: str
    until: datetime

    @classmethod
    def of(cls, lock: LockInfo | None) -> LockOut | None:
        return cls(reviewer=lock.reviewer, until=lock.until) if lock else None


class ReviewMediaOut(MediaOut):
    matched_terms: list[str] = Field(description="The sensitive terms the metadata matched.")


class QueueEntryOut(BaseModel):
    media: ReviewMediaOut
    waiting_since: datetime
    report_count: int
    reasons: dict[str, int] = Field(description="Pending reports by reason.")
    pending_reports: list[ReportOut]
    bank_review: bool = Field(description="A bank match waits for a reviewer's decision.")
    nsfw_score: float | None
    matches: list[ItemMatchOut]
    locked_by: str | None
    locked_until: datetime | None

    @classmethod
    def of(cls, entry: QueueEntry) -> QueueEntryOut:
        media = _media(entry.item, entry.matches, entry.actions)
        return cls(
            media=media,
            waiting_since=entry.waiting.waiting_since,
            report_count=entry.waiting.report_count,
            reasons=entry.reasons,
            pending_reports=[ReportOut.of(report) for report in entry.pending_reports],
            bank_review=entry.waiting.pending_review_actions > 0,
            nsfw_score=entry.item.nsfw_score,
            matches=media.matches,
            locked_by=entry.waiting.locked_by,
            locked_until=entry.waiting.locked_until,
        )


class QueueOut(BaseModel):
    total: int
    entries: list[QueueEntryOut]


class DecisionIn(BaseModel):
    media_ids: list[int] = Field(min_length=1, max_length=MAX_BULK)
    action: DecisionAction
    notes: str | None = Field(None, max_length=MAX_NOTES)


class DecisionOut(BaseModel):
    id: int
    action: str
    reviewer: str
    notes: str | None
    media_ids: list[int]
    created_at: datetime

    @classmethod
    def of(cls, decision: DecisionInfo) -> DecisionOut:
        return cls(
            id=decision.id,
            action=decision.action,
            reviewer=decision.reviewer,
            notes=decision.notes,
            media_ids=decision.item_ids,
            created_at=decision.created_at,
        )


class ReviewItemOut(BaseModel):
    media: ReviewMediaOut
    reports: list[ReportOut]
    decisions: list[DecisionOut]
    lock: LockOut | None
    audit: list[AuditOut]


def _media(
    item: ItemInfo, matches: Sequence[MatchRecord], actions: Sequence[ActionInfo] = ()
) -> ReviewMediaOut:
    base = MediaOut.of(item, list(matches), list(actions))
    return ReviewMediaOut(**base.model_dump(), matched_terms=item.matched_terms or [])


@router.get("/queue", response_model=QueueOut)
async def queue(
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0),
    include_locked: bool = Query(False, description="Also items other reviewers hold."),
    token: TokenInfo = Depends(_reviewer),
    service: Service = Depends(get_service),
) -> QueueOut:
    """Items waiting for a decision (pending reports, bank matches for review), oldest first.
    Items another reviewer holds are left out."""
    page = await run_in_threadpool(
        service.review.queue, token.name, limit=limit, offset=offset, include_locked=include_locked
    )
    return QueueOut(total=page.total, entries=[QueueEntryOut.of(entry) for entry in page.entries])


@router.post("/next", response_model=list[QueueEntryOut])
async def claim_next(
    count: int = Query(1, ge=1, le=50),
    token: TokenInfo = Depends(_reviewer),
    service: Service = Depends(get_service),
) -> list[QueueEntryOut]:
    """Take the oldest items nobody holds, locked to you for `MEDIAGUARD_REVIEW_LOCK_SECONDS`.
    The items you held are given back first, so asking again moves on."""
    entries = await run_in_threadpool(service.review.claim_next, token.name, count=count)
    return [QueueEntryOut.of(entry) for entry in entries]


@router.get("/media/{item_id}", response_model=ReviewItemOut)
async def review_item(
    item_id: int, _: TokenInfo = Depends(_reviewer), service: Service = Depends(get_service)
) -> ReviewItemOut:
    """Everything about one item: signals, matched terms, matches, reports, decisions, audit."""
    found = await run_in_threadpool(service.review.item, item_id)
    return ReviewItemOut(
        media=_media(found.item, found.matches, found.actions),
        reports=[ReportOut.of(report) for report in found.reports],
        decisions=[DecisionOut.of(decision) for decision in found.decisions],
        lock=LockOut.of(found.lock),
        audit=[AuditOut(**entry.__dict__) for entry in found.audit],
    )


@router.post("/media/{item_id}/lock", response_model=LockOut)
async def lock(
    item_id: int, token: TokenInfo = Depends(_reviewer), service: Service = Depends(get_service)
) -> LockOut | None:
    """Hold an item (or extend your hold); 409 if another reviewer holds it."""
    return LockOut.of(await run_in_threadpool(service.review.lock, item_id, token.name))


@router.delete("/media/{item_id}/lock", status_code=204)
async def unlock(
    item_id: int, token: TokenInfo = Depends(_reviewer), service: Service = Depends(get_service)
) -> Response:
    """Release your hold; 409 if another reviewer holds the item."""
    await run_in_threadpool(service.review.release, item_id, token.name)
    return Response(status_code=204)


@router.post("/decisions", response_model=DecisionOut, status_code=201)
async def decide(
    body: DecisionIn, token: TokenInfo = Depends(_reviewer), service: Service = Depends(get_service)
) -> DecisionOut:
    """One decision over one or more items, applied to all or none, effective in search at
    once. 404 if an item is unknown; 409 if another reviewer holds one, or a reversal has
    nothing to reverse."""
    decision = await run_in_threadpool(
        service.review.decide, body.media_ids, body.action, reviewer=token.name, notes=body.notes
    )
    return DecisionOut.of(decision)


@router.get("/decisions", response_model=list[DecisionOut])
async def decisions(
    media_id: int | None = None,
    before_id: int | None = Query(None, description="Page: decisions older than this id."),
    limit: int = Query(50, ge=1, le=500),
    _: TokenInfo = Depends(_reviewer),
    service: Service = Depends(get_service),
) -> list[DecisionOut]:
    found = await run_in_threadpool(
        service.review.decisions, item_id=media_id, before_id=before_id, limit=limit
    )
    return [DecisionOut.of(decision) for decision in found]
