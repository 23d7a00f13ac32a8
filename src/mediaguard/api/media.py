"""`/v1/media`: upload notifications, answered at once and processed by the workers, and the
state, signals, matches and actions of each item."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from mediaguard.api.deps import get_service, require
from mediaguard.api.intake import MULTIPART_SLACK, parse_form, read_body
from mediaguard.api.matching import ActionOut, PdqOut
from mediaguard.errors import InvalidInputError, MediaTooLargeError, MissingInputError
from mediaguard.pipeline import MediaSubmission, Submitted, parse_tags
from mediaguard.service import Service
from mediaguard.signals.digests import sha1_hex_to_base36
from mediaguard.signals.pdq import PdqHash
from mediaguard.store import TokenInfo
from mediaguard.store.items import ActionInfo, ItemInfo, MatchRecord

router = APIRouter(prefix="/v1/media", tags=["media"])

TEXT_FIELDS = ("platform_id", "url", "title", "description", "uploader", "sha1")
JSON_BODY_LIMIT = 1024 * 1024

SUBMIT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "platform_id": {"type": "string"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "uploader": {"type": "string"},
                    "sha1": {"type": "string", "description": "hex, or MediaWiki's base 36"},
                },
                "required": ["url"],
            },
            "example": {
                "url": "https://upload.wikimedia.org/wikipedia/commons/a/a9/Example.jpg",
                "platform_id": "File:Example.jpg",
                "title": "Example",
                "tags": ["example"],
                "uploader": "Jane",
                "sha1": "5l538vehydhyhvhdqqto838i5g6045u",
            },
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "platform_id": {"type": "string"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "uploader": {"type": "string"},
                    "sha1": {"type": "string"},
                },
                "required": ["file"],
            }
        },
    },
}


class ErrorOut(BaseModel):
    code: str
    detail: str | None


class NsfwOut(BaseModel):
    score: float
    model_version: str


class SignalsOut(BaseModel):
    sha256: str | None
    sha1: str | None
    sha1_base36: str | None
    md5: str | None
    pdq: PdqOut | None
    nsfw: NsfwOut | None
    width: int | None
    height: int | None
    format: str | None


class ItemMatchOut(BaseModel):
    bank: str
    bank_id: int
    category: str
    signal_type: str
    distance: int
    content_id: int


class MediaOut(BaseModel):
    id: int
    status_url: str
    state: str = Field(description="queued, processing, done or failed")
    platform_id: str
    origin: str = Field(description="api, backfill, or check (a synchronous /v1/checks call)")
    url: str | None
    title: str | None
    description: str | None
    tags: list[str]
    uploader: str | None
    attempts: int
    error: ErrorOut | None = Field(
        description="why the last attempt failed (for `failed`, or a `queued` retry)"
    )
    match_status: str | None = Field(description="match, no_match, or null: not checked yet")
    sensitivity: list[str] = Field(
        description="sensitive_text, sensitive_image and/or user_reported_sensitivity"
    )
    deindexed: str | None = Field(
        description="deindexed_sensitive or deindexed_copyright: a reviewer removed it from search"
    )
    signals: SignalsOut
    matches: list[ItemMatchOut]
    actions: list[ActionOut]
    queued_at: datetime | None
    next_attempt_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: ItemInfo, matches: list[MatchRecord], actions: list[ActionInfo]) -> MediaOut:
        nsfw = (
            NsfwOut(score=item.nsfw_score, model_version=item.nsfw_model_version)
            if item.nsfw_score is not None and item.nsfw_model_version
            else None
        )
        return cls(
            id=item.id,
            status_url=f"/v1/media/{item.id}",
            state=item.state,
            platform_id=item.platform_id,
            origin=item.origin,
            url=item.media_url,
            title=item.title,
            description=item.description,
            tags=item.tags or [],
            uploader=item.uploader,
            attempts=item.attempts,
            error=ErrorOut(code=item.error_code, detail=item.error_detail)
            if item.error_code and item.state != "done"
            else None,
            match_status=item.match_status,
            sensitivity=item.sensitivity,
            deindexed=item.deindexed,
            signals=SignalsOut(
                sha256=item.sha256,
                sha1=item.sha1,
                sha1_base36=sha1_hex_to_base36(item.sha1) if item.sha1 else None,
                md5=item.md5,
                pdq=PdqOut.of(PdqHash(item.pdq, item.pdq_quality))
                if item.pdq and item.pdq_quality is not None
                else None,
                nsfw=nsfw,
                width=item.width,
                height=item.height,
                format=item.media_format,
            ),
            matches=[
                ItemMatchOut(
                    bank=m.bank_name,
                    bank_id=m.bank_id,
                    category=m.category,
                    signal_type=m.signal_type,
                    distance=m.distance,
                    content_id=m.bank_content_id,
                )
                for m in matches
            ],
            actions=[ActionOut.of(a) for a in actions],
            queued_at=item.queued_at,
            next_attempt_at=item.next_attempt_at if item.state == "queued" else None,
            started_at=item.started_at,
            finished_at=item.finished_at,
            created_at=item.created_at,
            updated_at=item.updated_at,
        )


class SubmittedOut(MediaOut):
    outcome: str = Field(
        description="created or requeued (202); existing: already queued or processing, "
        "skipped: already done with the current model (200)"
    )


class MediaListOut(BaseModel):
    items: list[MediaOut]


def _view(service: Service, item: ItemInfo) -> MediaOut:
    return _views(service, [item])[0]


def _views(service: Service, found: list[ItemInfo]) -> list[MediaOut]:
    """Items with their matches and actions: two queries however many items."""
    ids = [item.id for item in found]
    matches = service.store.items.matches_of(ids)
    actions = service.store.items.actions_of(ids)
    return [MediaOut.of(i, matches.get(i.id, []), actions.get(i.id, [])) for i in found]


@router.post(
    "",
    response_model=SubmittedOut,
    status_code=202,
    responses={200: {"model": SubmittedOut, "description": "the notification was known"}},
    openapi_extra={"requestBody": SUBMIT_BODY},
)
async def submit_media(
    request: Request,
    response: Response,
    token: TokenInfo = Depends(require("client")),
    service: Service = Depends(get_service),
) -> SubmittedOut:
    """Tell mediaguard about an upload: JSON with the file's `url`, or multipart with its bytes
    in `file`, and what the platform knows (`platform_id`, `title`, `description`, `tags`,
    `uploader`, `sha1`). Answers as soon as the item is stored; a worker does the rest.

    202 for a new item; the same notification again (same `platform_id` and content) returns
    the same item with 200 instead of a second one. Poll `status_url` for the verdict."""
    submission = await _read_submission(request, service.settings.max_image_bytes)
    submitted: Submitted = await run_in_threadpool(service.pipeline.submit, submission)
    assert submitted.item is not None
    if submitted.outcome in ("existing", "skipped"):
        response.status_code = 200
    if submitted.outcome == "created":  # nothing matched or acted on yet: no queries needed
        view = MediaOut.of(submitted.item, [], [])
    else:
        view = await run_in_threadpool(_view, service, submitted.item)
    return SubmittedOut(**view.model_dump(), outcome=submitted.outcome)


@router.get("/{item_id}", response_model=MediaOut)
async def get_media(
    item_id: int,
    token: TokenInfo = Depends(require("client", "reviewer")),
    service: Service = Depends(get_service),
) -> MediaOut:
    """An item: its state, every signal, its bank matches, labels, actions and last error."""
    return await run_in_threadpool(lambda: _view(service, service.pipeline.get(item_id)))


@router.get("", response_model=MediaListOut)
async def find_media(
    sha1: str | None = Query(None, description="hex or MediaWiki's base 36"),
    platform_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    token: TokenInfo = Depends(require("client", "reviewer")),
    service: Service = Depends(get_service),
) -> MediaListOut:
    """Items by the file's SHA-1 or the platform's id, newest first."""

    def find() -> MediaListOut:
        found = service.pipeline.find(sha1=sha1, platform_id=platform_id, limit=limit)
        return MediaListOut(items=_views(service, found))

    return await run_in_threadpool(find)


@router.post("/{item_id}/retry", response_model=MediaOut, status_code=202)
async def retry_media(
    item_id: int,
    token: TokenInfo = Depends(require("admin")),
    service: Service = Depends(get_service),
) -> MediaOut:
    """Send a failed item round again (its attempts start over)."""
    item = await run_in_threadpool(service.pipeline.retry, item_id, actor=token.name)
    return await run_in_threadpool(_view, service, item)


async def _read_submission(request: Request, max_bytes: int) -> MediaSubmission:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return _from_json(await read_body(request, JSON_BODY_LIMIT))
    if content_type == "multipart/form-data":
        return await _from_form(request, max_bytes)
    raise MissingInputError(
        "send JSON with a `url`, or multipart/form-data with the bytes in `file` "
        f"(got content type {content_type or 'none'!r})"
    )


def _from_json(body: bytes) -> MediaSubmission:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError("the JSON body must be an object")
    if not data.get("url"):
        raise MissingInputError("`url` is required (or send the bytes as multipart `file`)")
    fields = {name: _string(name, data.get(name)) for name in TEXT_FIELDS}
    return MediaSubmission(
        url=fields["url"],
        platform_id=fields["platform_id"] or "",
        title=fields["title"],
        description=fields["description"],
        uploader=fields["uploader"],
        sha1=fields["sha1"],
        tags=parse_tags(data.get("tags")),
    )


async def _from_form(request: Request, max_bytes: int) -> MediaSubmission:
    async with parse_form(request, max_bytes + MULTIPART_SLACK, max_fields=256) as form:
        if "url" in form:
            raise InvalidInputError("send either the bytes in `file` or a `url` (as JSON)")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise MissingInputError("multipart field `file` with the image bytes is required")
        content = await upload.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise MediaTooLargeError(f"file passed the limit of {max_bytes} bytes")
        fields = {name: _string(name, form.get(name)) for name in TEXT_FIELDS if name != "url"}
        tags = [t for t in form.getlist("tags") if isinstance(t, str)]
    return MediaSubmission(
        content=content,
        platform_id=fields["platform_id"] or "",
        title=fields["title"],
        description=fields["description"],
        uploader=fields["uploader"],
        sha1=fields["sha1"],
        tags=parse_tags(tags[0] if len(tags) == 1 else tags),
    )


def _string(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"`{name}` must be a string")
    return str(value)
