"""Reading media out of a request: a `url` form field, a multipart `file`, or a raw image body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message

from mediaguard.errors import InvalidInputError, MediaTooLargeError, MissingInputError

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
RAW_TYPES = ("application/octet-stream",)
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file

MEDIA_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {"url": {"type": "string", "format": "uri"}},
                "required": ["url"],
            },
            "example": {"url": "https://upload.wikimedia.org/wikipedia/commons/a/a9/Example.jpg"},
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "url": {"type": "string", "format": "uri"},
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


@dataclass(frozen=True)
class MediaInput:
    content: bytes | None = None
    url: str | None = None


async def read_media(
    request: Request, max_bytes: int, *, file_fields: tuple[str, ...] = ("file",)
) -> MediaInput:
    """The media of a request. ``file_fields`` are the multipart names a file may come in."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        async with parse_form(request, max_bytes + MULTIPART_SLACK) as form:
            return await _from_form(form, max_bytes, file_fields)
    if content_type.startswith("image/") or content_type in RAW_TYPES:
        return MediaInput(content=await read_body(request, max_bytes))
    raise MissingInputError(
        "send a form field `url`, a multipart field `file`, or the image itself as the body "
        f"with an image/* content type (got content type {content_type or 'none'!r})"
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused as soon as it passes `max_bytes` (declared or streamed)."""
    return b"".join([chunk async for chunk in stream_body(request, max_bytes)])


async def stream_body(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks as they come, refused as soon as it passes `max_bytes` (declared or
    streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise MediaTooLargeError(f"request body is {declared} bytes; the limit is {max_bytes}")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise MediaTooLargeError(f"request body passed the limit of {max_bytes} bytes")
        yield chunk


@asynccontextmanager
async def parse_form(
    request: Request, max_body: int, *, max_fields: int = 16
) -> AsyncIterator[FormData]:
    """The request's form (urlencoded or multipart), its body read under ``max_body`` first."""
    body = await read_body(request, max_body)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=max_fields)
    except Exception as exc:  # malformed multipart: python-multipart raises several types
        raise InvalidInputError(f"malformed form body: {exc}") from None
    try:
        yield form
    finally:
        await form.close()


async def _from_form(form: FormData, max_bytes: int, file_fields: tuple[str, ...]) -> MediaInput:
    upload = next((form.get(name) for name in file_fields if name in form), None)
    url = form.get("url")
    if isinstance(upload, UploadFile):
        content = await upload.read(max_bytes + 1)
        if len(content) > max_bytes:
            raise MediaTooLargeError(f"file passed the limit of {max_bytes} bytes")
        return MediaInput(content=content)
    if isinstance(url, str) and url.strip():
        return MediaInput(url=url.strip())
    raise MissingInputError(
        f"missing form field `url` (or multipart field {' or '.join(file_fields)})"
    )
