"""`GET /v1/terms`: the sensitive-term list in force and the re-evaluation's progress."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service, require
from mediaguard.service import Service
from mediaguard.store import TokenInfo

router = APIRouter(prefix="/v1", tags=["search"])


class TermStatusOut(BaseModel):
    version: str = Field(description="SHA-256 of the normalised list.")
    terms: int
    source: str | None
    loaded_at: datetime | None
    relabelled: int = Field(description="Items re-evaluated against this version so far.")
    items_to_relabel: int = Field(description="Items still labelled with another version.")
    finished_at: datetime | None


@router.get("/terms", response_model=TermStatusOut)
async def term_status(
    _: TokenInfo = Depends(require("reviewer")), service: Service = Depends(get_service)
) -> TermStatusOut:
    """The terms themselves are never served: only their count and version."""
    status = await run_in_threadpool(service.terms.status)
    return TermStatusOut(
        version=status.version,
        terms=status.terms,
        source=status.source,
        loaded_at=status.loaded_at,
        relabelled=status.relabelled,
        items_to_relabel=status.stale,
        finished_at=status.finished_at,
    )
