"""Thumbnails of items' images, fetched through the guarded fetcher: pages never point a browser
at a platform's image host, and an image is served only after the caller's visibility check."""

from __future__ import annotations

import io
import threading

from PIL import Image, ImageOps
from starlette.responses import Response

from mediaguard.media.decode import decode
from mediaguard.service import Service

THUMBNAIL_SIZE = 640
# Decoding takes the memory (a PNG is decoded whole): a page of thumbnails must not decode all
# of them at once on the threadpool.
_decoding = threading.BoundedSemaphore(4)


def thumbnail(service: Service, url: str) -> bytes:
    """A JPEG of the image at ``url``, at most ``THUMBNAIL_SIZE`` pixels on its longer side.
    Blocking: the fetch and the decode run on the caller's thread."""
    content = service.fetch_bytes(url)
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


def thumbnail_response(service: Service, url: str) -> Response:
    return Response(
        thumbnail(service, url),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
