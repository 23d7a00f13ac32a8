"""Thumbnails of items' images, fetched through the guarded fetcher: pages never point a browser
at a platform's image host, and an image is served only after the caller's visibility check,
and only if its bytes are still the ones that were checked (a file replaced at its address
since has matched no bank and has no score)."""

from __future__ import annotations

import hashlib
import io
import threading

from PIL import Image, ImageOps
from starlette.responses import Response

from mediaguard.errors import NotFoundError, ServiceUnavailableError
from mediaguard.media.decode import decode
from mediaguard.service import Service
from mediaguard.store.items import ItemInfo

THUMBNAIL_SIZE = 640
# Decoding takes the memory (a PNG is decoded whole): a page of thumbnails must not decode all
# of them at once on the threadpool.
_decoding = threading.BoundedSemaphore(4)
# Fetches wait on other hosts: past this many at once, a request is turned away rather than
# holding one of the server's threads.
_fetching = threading.BoundedSemaphore(8)
FETCH_QUEUE_SECONDS = 2.0


def thumbnail(service: Service, item: ItemInfo) -> bytes:
    """A JPEG of the item's image, at most ``THUMBNAIL_SIZE`` pixels on its longer side.
    Blocking: the fetch and the decode run on the caller's thread."""
    if not item.media_url or not item.sha256:
        raise NotFoundError(f"media item {item.id} has no checked image")
    if not _fetching.acquire(timeout=FETCH_QUEUE_SECONDS):
        raise ServiceUnavailableError("too many images are being fetched; try again")
    try:
        content = service.fetch_bytes(item.media_url)
    finally:
        _fetching.release()
    if hashlib.sha256(content).hexdigest() != item.sha256:
        raise NotFoundError(
            f"the file at media item {item.id}'s address changed since it was checked"
        )
    with _decoding:
        media = decode(
            content,
            max_pixels=service.settings.max_image_pixels,
            draft=(THUMBNAIL_SIZE, THUMBNAIL_SIZE),
        )
        image = ImageOps.exif_transpose(media.image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82, optimize=True)
    return buffer.getvalue()


def thumbnail_response(service: Service, item: ItemInfo, *, cache: str) -> Response:
    return Response(
        thumbnail(service, item),
        media_type="image/jpeg",
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
