"""`GET /v1/search`: the catalogue, with sensitive results left out unless asked for."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service
from mediaguard.service import Service
from mediaguard.store.items import ItemInfo

router = APIRouter(prefix="/v1", tags=["search"])


class SearchResultOut(BaseModel):
    id: int
    title: str | None
    description: str | None
    tags: list[str]
    creator: str | None
    url: str | None
    width: int | None
    height: int | None
    detail_url: str
    sensitivity: list[str] = Field(
        description="Why a result is sensitive: sensitive_text, sensitive_image, "
        "user_reported_sensitivity. Empty for results that are not."
    )

    @classmethod
    def of(cls, item: ItemInfo) -> SearchResultOut:
        return cls(
            id=item.id,
            title=item.title,
            description=item.description,
            tags=item.tags or [],
            creator=item.uploader,
            url=item.media_url,
            width=item.width,
            height=item.height,
            detail_url=f"/v1/search/{item.id}",
            sensitivity=item.sensitivity,
        )


class SearchOut(BaseModel):
    result_count: int
    page_count: int
    page: int
    page_size: int
    results: list[SearchResultOut]


@router.get("/search", response_model=SearchOut)
async def search(
    q: str = Query("", description="Words to find in titles, descriptions and tags."),
    page: int = Query(1, ge=1),
    page_size: int = Query(20, ge=1),
    include_sensitive_results: bool = Query(
        False, description="Include results labelled sensitive (each with its `sensitivity`)."
    ),
    service: Service = Depends(get_service),
) -> SearchOut:
    """Full-text search over the public catalogue, best match first. Items that matched a hash
    bank or that a reviewer deindexed are never returned."""
    found = await run_in_threadpool(
        service.catalogue.search,
        q,
        page=page,
        page_size=page_size,
        include_sensitive=include_sensitive_results,
    )
    return SearchOut(
        result_count=found.total,
        page_count=found.page_count,
        page=found.page,
        page_size=found.page_size,
        results=[SearchResultOut.of(item) for item in found.results],
    )


@router.get("/search/{item_id}", response_model=SearchResultOut)
async def search_result(item_id: int, service: Service = Depends(get_service)) -> SearchResultOut:
    """One public result, with its `sensitivity`."""
    return SearchResultOut.of(await run_in_threadpool(service.catalogue.item, item_id))
