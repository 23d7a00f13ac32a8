"""Decode an image once, for every signal.

Truncated files are decoded as far as they go (a wiki's cross-wiki transfers often are), the pixel
count is checked from the header before any pixel is decoded (decompression bombs), and only the
first frame of an animation is kept.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageFile, UnidentifiedImageError

from mediaguard.errors import MediaTooLargeError, UnsupportedMediaError

# Pillow's own bomb guard is replaced by the explicit, configurable limit in `decode`.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = True

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "TIFF", "BMP"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)


@dataclass(frozen=True, eq=False)
class DecodedMedia:
    """The bytes of one image and its first frame, decoded once."""

    content: bytes
    image: Image.Image = field(repr=False)
    media_format: str
    width: int  # of the original, even when `image` was decoded at a reduced scale
    height: int

    @property
    def reduced(self) -> bool:
        return self.image.size != (self.width, self.height)


def identify(content: bytes, *, max_pixels: int) -> tuple[Image.Image, str]:
    """Open `content` from its header alone: the image (not yet loaded) and its format. Refuses
    what is not an accepted image, or has more than `max_pixels`, without decoding a pixel."""
    if not content:
        raise UnsupportedMediaError("empty body: no image bytes were sent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on odd-but-decodable files (EXIF, palette)
        try:
            image = Image.open(io.BytesIO(content))
        except UnidentifiedImageError:
            raise UnsupportedMediaError("not an image, or an image format not supported") from None
        except _DECODE_ERRORS as exc:
            raise UnsupportedMediaError(f"corrupt image header: {exc}") from None
    media_format = image.format or "unknown"
    if media_format not in ACCEPTED_FORMATS:
        raise UnsupportedMediaError(f"image format {media_format} is not accepted")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise UnsupportedMediaError("image has no pixels")
    if width * height > max_pixels:
        raise MediaTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return image, media_format


def decode(
    content: bytes, *, max_pixels: int, draft: tuple[int, int] | None = None
) -> DecodedMedia:
    """Decode `content`; with `draft`, JPEGs decode at the smallest DCT scale still >= draft."""
    image, media_format = identify(content, max_pixels=max_pixels)
    width, height = image.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if draft is not None and media_format in ("JPEG", "MPO"):
            image.draft("RGB", draft)
        try:
            image.load()
        except _DECODE_ERRORS as exc:
            raise UnsupportedMediaError(f"corrupt image data: {exc}") from None
    return DecodedMedia(content, image, media_format, width, height)
