"""`POST /v1/media/{id}/report`: a user's report, filed by the platform on the user's behalf."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service, require
from mediaguard.review import MAX_DESCRIPTION, ReportReason
from mediaguard.service import Service
from mediaguard.store import TokenInfo
from mediaguard.store.review import ReportInfo

router = APIRouter(prefix="/v1", tags=["reports"])


class ReportIn(BaseModel):
    reason: ReportReason
    description: str | None = Field(
        None,
        description="What is wrong; at least 20 characters for `other`.",
        max_length=MAX_DESCRIPTION,
    )
    reporter: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The platform's own id for the person reporting (opaque, e.g. a hash). "
        "With it the hourly limit counts each person; without it, the whole token.",
    )


class ReportOut(BaseModel):
    id: int
    media_id: int
    reason: str
    description: str | None
    status: str = Field(description="pending until a reviewer decides; then the decision")
    created_at: datetime

    @classmethod
    def of(cls, report: ReportInfo) -> ReportOut:
        return cls(
            id=report.id,
            media_id=report.item_id,
            reason=report.reason,
            description=report.description,
            status=report.status,
            created_at=report.created_at,
        )


@router.post("/media/{item_id}/report", response_model=ReportOut, status_code=201)
async def report(
    item_id: int,
    body: ReportIn,
    token: TokenInfo = Depends(require("client", "reviewer")),
    service: Service = Depends(get_service),
) -> ReportOut:
    """Report an item for review. Rate-limited per token, or per `reporter` of a token
    (`MEDIAGUARD_REPORT_RATE_LIMIT` an hour; 429 with `Retry-After` beyond it)."""
    reporter = f"token:{token.name}" + (f"/{body.reporter}" if body.reporter else "")
    filed = await run_in_threadpool(
        service.review.report, item_id, body.reason, body.description, reporter=reporter
    )
    return ReportOut.of(filed)
