"""Stored scores by content digest, for platform code that needs them in milliseconds."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.responses import Response

from mediaguard.api.deps import get_service, run_read, scoring_access
from mediaguard.errors import NotFoundError
from mediaguard.service import MAX_LOOKUP_DIGESTS, ScoreFields, Service
from mediaguard.store import StoredScore

JSON = "application/json"

router = APIRouter(tags=["scores"], dependencies=[Depends(scoring_access)])


class StoredScoreOut(ScoreFields):
    created_at: datetime


class DigestScores(BaseModel):
    digest: str = Field(description="as asked")
    score: float | None = Field(
        description="the score of the service's current model version, else the newest one"
    )
    scores: list[StoredScoreOut] = Field(description="every stored model version, newest first")


class LookupRequest(BaseModel):
    digests: list[str] = Field(
        max_length=MAX_LOOKUP_DIGESTS,
        examples=[["2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "5l538vehydhyhvhdqqto838i5g6045u"]],
    )


class LookupResponse(BaseModel):
    results: list[DigestScores] = Field(description="one per digest asked, in order")


@router.get("/v1/scores/{digest}", response_model=DigestScores)
async def get_scores(digest: str, service: Service = Depends(get_service)) -> Response:
    """Scores of the file with this SHA-1 (hex or MediaWiki base-36) or SHA-256; 404 if none."""
    scores = await run_read(service, service.lookup, digest)
    if not scores:
        raise NotFoundError(f"no score stored for {digest}")
    # The hot path of platform code: serialised straight from the model, not re-validated.
    return Response(_answer(digest, scores, service).model_dump_json(), media_type=JSON)


@router.post("/v1/scores/lookup", response_model=LookupResponse)
async def lookup(body: LookupRequest, service: Service = Depends(get_service)) -> LookupResponse:
    """Up to 1,000 digests in one call; unknown digests come back with no scores."""
    found = await run_in_threadpool(service.lookup_many, body.digests)
    return LookupResponse(results=[_answer(d, found[d], service) for d in body.digests])


def _answer(digest: str, scores: list[StoredScore], service: Service) -> DigestScores:
    current = service.current_model_version()
    ordered = sorted(scores, key=lambda s: (s.model_version != current, -s.created_at.timestamp()))
    return DigestScores(
        digest=digest,
        score=ordered[0].score if ordered else None,
        scores=[StoredScoreOut(**ScoreFields.of(s), created_at=s.created_at) for s in ordered],
    )
