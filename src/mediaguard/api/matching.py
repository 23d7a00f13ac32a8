"""`/v1/hash`, `/v1/lookup`, `/v1/compare` (read only) and `/v1/checks` (an upload checked
against the banks, with the actions policy plans: needs a `client` token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service, require, scoring_access
from mediaguard.api.intake import MEDIA_REQUEST_BODY, read_media
from mediaguard.banks.hashes import normalize_hash
from mediaguard.banks.matcher import BankMatch
from mediaguard.checks import CheckResult
from mediaguard.errors import InvalidInputError, MissingInputError
from mediaguard.service import Service
from mediaguard.signals.hashes import MediaHashes
from mediaguard.signals.pdq import DEFAULT_THRESHOLD, PdqHash, hamming_distance
from mediaguard.store import TokenInfo
from mediaguard.store.items import ActionInfo

router = APIRouter(prefix="/v1", tags=["matching"])


class PdqOut(BaseModel):
    hash: str
    quality: int
    matchable: bool = Field(description="Quality >= 50: hashes below are never matched.")

    @classmethod
    def of(cls, pdq: PdqHash) -> PdqOut:
        return cls(hash=pdq.hex, quality=pdq.quality, matchable=pdq.matchable)


class HashesOut(BaseModel):
    sha256: str
    sha1: str
    sha1_base36: str
    md5: str
    pdq: PdqOut | None

    @classmethod
    def of(cls, hashes: MediaHashes) -> HashesOut:
        pdq = hashes.pdq
        return cls(
            sha256=hashes.sha256,
            sha1=hashes.sha1,
            sha1_base36=hashes.sha1_base36,
            md5=hashes.md5,
            pdq=None if pdq is None else PdqOut.of(pdq),
        )


class MatchOut(BaseModel):
    bank: str
    category: str
    signal_type: str
    distance: int
    threshold: int
    content_id: int
    metadata: dict[str, Any]
    note: str | None

    @classmethod
    def of(cls, match: BankMatch) -> MatchOut:
        return cls(**{name: getattr(match, name) for name in cls.model_fields})


class LookupIn(BaseModel):
    signals: dict[str, str] = Field(examples=[{"pdq": "f8f8" * 16}])
    banks: list[str] | None = None


class LookupOut(BaseModel):
    matches: list[MatchOut]


class CompareIn(BaseModel):
    signal_type: str = "pdq"
    left: str
    right: str
    threshold: int = Field(DEFAULT_THRESHOLD, ge=0, le=256)


class CompareOut(BaseModel):
    distance: int
    match: bool


class ActionOut(BaseModel):
    id: int
    item_id: int
    bank_id: int
    action: str
    mode: str
    status: str
    detail: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, action: ActionInfo) -> ActionOut:
        return cls(**action.__dict__)


class ItemOut(BaseModel):
    id: int
    platform_id: str
    media_url: str | None
    sha256: str | None
    sha1: str | None
    pdq: str | None
    pdq_quality: int | None
    match_status: str | None
    last_checked_at: datetime | None


class CheckOut(BaseModel):
    item: ItemOut
    matches: list[MatchOut]
    new_match_banks: list[str] = Field(description="Banks matched for the first time.")
    actions: list[ActionOut] = Field(description="Actions this check ran or queued.")

    @classmethod
    def of(cls, result: CheckResult) -> CheckOut:
        item = result.item
        return cls(
            item=ItemOut(**{name: getattr(item, name) for name in ItemOut.model_fields}),
            matches=[MatchOut.of(match) for match in result.matches],
            new_match_banks=[record.bank_name for record in result.new_matches],
            actions=[ActionOut.of(action) for action in result.actions],
        )


async def _hashes(request: Request, service: Service) -> tuple[MediaHashes, str | None]:
    media = await read_media(request, service.settings.max_image_bytes)
    if media.content is not None:
        return await run_in_threadpool(service.hash_bytes, media.content), None
    assert media.url is not None
    return await run_in_threadpool(service.hash_url, media.url), media.url


@router.post(
    "/hash",
    response_model=HashesOut,
    dependencies=[Depends(scoring_access)],
    openapi_extra={"requestBody": MEDIA_REQUEST_BODY},
)
async def hash_media(request: Request, service: Service = Depends(get_service)) -> HashesOut:
    """Every hash of an image: SHA-256, SHA-1 (hex and base 36), MD5 and PDQ."""
    hashes, _ = await _hashes(request, service)
    return HashesOut.of(hashes)


@router.post("/lookup", response_model=LookupOut, dependencies=[Depends(scoring_access)])
async def lookup(body: LookupIn, service: Service = Depends(get_service)) -> LookupOut:
    """Match hashes against every enabled bank (PDQ within each bank's threshold)."""
    signals = {kind: normalize_hash(kind, value) for kind, value in body.signals.items()}
    if not signals:
        raise MissingInputError("no hash given")
    matches = await run_in_threadpool(service.match, signals, banks=body.banks)
    return LookupOut(matches=[MatchOut.of(match) for match in matches])


@router.post("/compare", response_model=CompareOut, dependencies=[Depends(scoring_access)])
async def compare(body: CompareIn) -> CompareOut:
    left = normalize_hash(body.signal_type, body.left)
    right = normalize_hash(body.signal_type, body.right)
    if body.signal_type == "pdq":
        distance = hamming_distance(left, right)
        return CompareOut(distance=distance, match=distance <= body.threshold)
    return CompareOut(distance=0 if left == right else 1, match=left == right)


@router.post(
    "/checks",
    response_model=CheckOut,
    openapi_extra={
        "requestBody": MEDIA_REQUEST_BODY,
        "parameters": [],
    },
)
async def check(
    request: Request,
    platform_id: str = "",
    media_url: str | None = None,
    sha1: str | None = None,
    sha256: str | None = None,
    token: TokenInfo = Depends(require("client")),
    service: Service = Depends(get_service),
) -> CheckOut:
    """Check an upload against the banks and act on new matches (e-mail, takedown, review).

    Send the image (form `url`, multipart `file`, raw body), or only `sha256` (and `sha1`) as
    query parameters: an upload whose digest is already a known match is acted on at once.
    Checking the same item again never repeats an action."""
    if sha256 is not None and not request.headers.get("content-type"):
        digest = normalize_hash("sha256", sha256)
        sha1_hex = normalize_hash("sha1", sha1) if sha1 else None
        result = await run_in_threadpool(
            lambda: service.check_digest(
                sha256=digest,
                sha1=sha1_hex,
                platform_id=platform_id,
                media_url=media_url,
                actor=token.name,
            )
        )
        return CheckOut.of(result)
    if len(platform_id) > 255:
        raise InvalidInputError("platform_id is longer than 255 characters")
    media = await read_media(request, service.settings.max_image_bytes)
    if media.content is not None:
        content = media.content
        result = await run_in_threadpool(
            lambda: service.check_bytes(
                content, platform_id=platform_id, media_url=media_url, actor=token.name
            )
        )
    else:
        url = media.url
        assert url is not None
        result = await run_in_threadpool(
            lambda: service.check_url(url, platform_id=platform_id, actor=token.name)
        )
    return CheckOut.of(result)
