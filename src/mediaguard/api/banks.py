"""`/v1/banks`: hash banks, their content, import and export. Changes need an `admin` token;
reading needs `admin` or `reviewer` (bank contents are sensitive)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from mediaguard.api.deps import get_service, require
from mediaguard.api.intake import read_media, stream_body
from mediaguard.banks.formats import write_csv, write_text
from mediaguard.errors import InvalidInputError
from mediaguard.policy import bank_actions
from mediaguard.service import Service
from mediaguard.signals.pdq import DEFAULT_THRESHOLD
from mediaguard.store import TokenInfo
from mediaguard.store.banks import BankInfo, ContentInfo

router = APIRouter(prefix="/v1/banks", tags=["banks"])
_admin = require("admin")
_curator = require("admin", "reviewer")
MAX_IMPORT_BYTES = 512 * 1024 * 1024

Category = Literal["child_protection", "terrorism", "ncii", "other"]
Action = Literal["notify", "takedown", "review"]


class BankIn(BaseModel):
    name: str = Field(examples=["NCMEC_CSAM"])
    category: Category = "other"
    pdq_threshold: int = Field(DEFAULT_THRESHOLD, ge=0, le=63)
    enabled: bool = True
    actions: list[Action] | None = Field(
        None, description="Omit for the category's default policy."
    )
    description: str | None = None
    exchange: str | None = Field(None, examples=["local_file"])
    exchange_config: dict[str, Any] | None = Field(None, examples=[{"filename": "/srv/l.txt"}])


class BankPatch(BaseModel):
    name: str | None = None
    category: Category | None = None
    pdq_threshold: int | None = Field(None, ge=0, le=63)
    enabled: bool | None = None
    actions: list[Action] | None = None
    description: str | None = None
    exchange_config: dict[str, Any] | None = None


class BankOut(BaseModel):
    name: str
    category: str
    pdq_threshold: int
    enabled: bool
    actions: list[str] = Field(description="The actions in effect (configured or default).")
    actions_configured: bool
    description: str | None
    exchange: str | None
    fetched_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, bank: BankInfo) -> BankOut:
        return cls(
            name=bank.name,
            category=bank.category,
            pdq_threshold=bank.pdq_threshold,
            enabled=bank.enabled,
            actions=list(bank_actions(bank.category, bank.actions)),
            actions_configured=bank.actions is not None,
            description=bank.description,
            exchange=bank.exchange,
            fetched_at=bank.fetched_at,
            created_at=bank.created_at,
            updated_at=bank.updated_at,
        )


class BankDetail(BankOut):
    hashes: dict[str, int] = Field(description="How many hashes of each type.")


class ContentOut(BaseModel):
    id: int
    bank: str
    signals: dict[str, str]
    note: str | None
    metadata: dict[str, Any]
    enabled: bool
    source: str
    media_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, content: ContentInfo) -> ContentOut:
        return cls(**{name: getattr(content, name) for name in cls.model_fields})


class SignalsIn(BaseModel):
    signals: dict[str, str] = Field(examples=[{"pdq": "f" * 64, "md5": "0" * 32}])
    note: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ContentPatch(BaseModel):
    enabled: bool


class AddOut(BaseModel):
    content: ContentOut | None = Field(description="None when every hash was in the bank.")
    added: int
    duplicates: int


class ImportOut(BaseModel):
    added: int
    duplicates: int
    skipped: int
    errors: list[str]


@router.get("", response_model=list[BankOut])
async def list_banks(
    _: TokenInfo = Depends(_curator), service: Service = Depends(get_service)
) -> list[BankOut]:
    return [BankOut.of(bank) for bank in await run_in_threadpool(service.banks.all)]


@router.post("", response_model=BankOut, status_code=201)
async def create_bank(
    body: BankIn, token: TokenInfo = Depends(_admin), service: Service = Depends(get_service)
) -> BankOut:
    fields = body.model_dump()
    bank = await run_in_threadpool(
        lambda: service.banks.create(fields.pop("name"), **fields, actor=token.name)
    )
    return BankOut.of(bank)


@router.get("/{name}", response_model=BankDetail)
async def show_bank(
    name: str, _: TokenInfo = Depends(_curator), service: Service = Depends(get_service)
) -> BankDetail:
    bank = await run_in_threadpool(service.banks.get, name)
    counts = await run_in_threadpool(service.banks.counts, name)
    return BankDetail(**BankOut.of(bank).model_dump(), hashes=counts)


@router.patch("/{name}", response_model=BankOut)
async def update_bank(
    name: str,
    body: BankPatch,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> BankOut:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInputError("nothing to change")
    return BankOut.of(
        await run_in_threadpool(service.banks.update, name, changes, actor=token.name)
    )


@router.delete("/{name}", status_code=204)
async def delete_bank(
    name: str, token: TokenInfo = Depends(_admin), service: Service = Depends(get_service)
) -> None:
    await run_in_threadpool(service.banks.delete, name, actor=token.name)


@router.get("/{name}/content", response_model=list[ContentOut])
async def list_content(
    name: str,
    after_id: int = Query(0, ge=0, description="Page after this content id."),
    limit: int = Query(100, ge=1, le=1000),
    _: TokenInfo = Depends(_curator),
    service: Service = Depends(get_service),
) -> list[ContentOut]:
    found = await run_in_threadpool(
        service.banks.list_content, name, after_id=after_id, limit=limit
    )
    return [ContentOut.of(content) for content in found]


@router.post("/{name}/content", response_model=AddOut, status_code=201)
async def add_image(
    name: str,
    request: Request,
    note: str | None = None,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> AddOut:
    """Add an image (form `url`, multipart `file`, or the raw image body): every hash of it."""
    await run_in_threadpool(service.banks.get, name)
    media = await read_media(request, service.settings.max_image_bytes)
    if media.content is not None:
        hashes = await run_in_threadpool(service.hash_bytes, media.content)
    else:
        assert media.url is not None
        hashes = await run_in_threadpool(service.hash_url, media.url)
    content, result = await run_in_threadpool(
        lambda: service.banks.add_image(
            name,
            hashes,
            note=note,
            media_url=media.url,
            actor=token.name,
        )
    )
    return AddOut(
        content=ContentOut.of(content) if content else None,
        added=result.added,
        duplicates=result.duplicates,
    )


@router.post("/{name}/signals", response_model=AddOut, status_code=201)
async def add_signals(
    name: str,
    body: SignalsIn,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> AddOut:
    """Add one content given by its hashes (signal_type -> value)."""
    content, result = await run_in_threadpool(
        lambda: service.banks.add_content(
            name, body.signals, note=body.note, metadata=body.metadata, actor=token.name
        )
    )
    return AddOut(
        content=ContentOut.of(content) if content else None,
        added=result.added,
        duplicates=result.duplicates,
    )


@router.get("/{name}/content/{content_id}", response_model=ContentOut)
async def show_content(
    name: str,
    content_id: int,
    _: TokenInfo = Depends(_curator),
    service: Service = Depends(get_service),
) -> ContentOut:
    return ContentOut.of(await run_in_threadpool(service.banks.get_content, name, content_id))


@router.patch("/{name}/content/{content_id}", response_model=ContentOut)
async def update_content(
    name: str,
    content_id: int,
    body: ContentPatch,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> ContentOut:
    content = await run_in_threadpool(
        service.banks.set_content_enabled, name, content_id, body.enabled, actor=token.name
    )
    return ContentOut.of(content)


@router.delete("/{name}/content/{content_id}", status_code=204)
async def remove_content(
    name: str,
    content_id: int,
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> None:
    await run_in_threadpool(service.banks.remove_content, name, content_id, actor=token.name)


@router.post("/{name}/import", response_model=ImportOut)
async def import_list(
    name: str,
    request: Request,
    format: Literal["text", "csv"] = "text",
    signal_type: str | None = Query(None, description="Type of lines that name none."),
    on_error: Literal["raise", "skip"] = "raise",
    token: TokenInfo = Depends(_admin),
    service: Service = Depends(get_service),
) -> ImportOut:
    """Import a hash list sent as the body: text (`<type> <hash>` or `<hash>` lines) or CSV."""
    await run_in_threadpool(service.banks.get, name)
    # Spooled to disk past a few MiB: a list can be hundreds of megabytes.
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        async for chunk in stream_body(request, MAX_IMPORT_BYTES):
            spool.write(chunk)
        spool.seek(0)
        result, stats = await run_in_threadpool(
            lambda: service.banks.import_list(
                name,
                spool,  # type: ignore[arg-type]
                format,
                signal_type=signal_type,
                on_error=on_error,
                actor=token.name,
            )
        )
    return ImportOut(
        added=result.added,
        duplicates=result.duplicates,
        skipped=stats.skipped,
        errors=stats.errors,
    )


@router.get("/{name}/export")
async def export_list(
    name: str,
    format: Literal["text", "csv"] = "text",
    _: TokenInfo = Depends(_curator),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    """The bank's hashes as a text list (`<type> <hash>` lines) or CSV."""
    await run_in_threadpool(service.banks.get, name)
    writer = write_csv if format == "csv" else write_text
    # Spooled to a temporary file first: the list can be far larger than memory.
    spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115

    def write() -> None:
        writer(spool, service.banks.export(name))
        spool.seek(0)

    try:
        await run_in_threadpool(write)
    except BaseException:
        spool.close()
        raise

    def chunks() -> Iterator[bytes]:
        with spool:
            while chunk := spool.read(1 << 16):
                yield chunk.encode()

    media_type = "text/csv" if format == "csv" else "text/plain"
    return StreamingResponse(
        chunks(),
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )
