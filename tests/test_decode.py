from __future__ import annotations

import pytest

from mediaguard.errors import MediaTooLargeError, UnsupportedMediaError
from mediaguard.media.decode import decode

from fixtures.images import encode, jpeg_of, photo, png_header_only, skimage_bytes, truncated

LIMIT = 100_000_000


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("WEBP", {"quality": 80}), ("TIFF", {}), ("BMP", {})],
)
def test_accepted_formats_decode(fmt: str, params: dict[str, object]) -> None:
    image = photo("chelsea.png")
    media = decode(encode(image.convert("RGB"), fmt, **params), max_pixels=LIMIT)
    assert media.media_format == fmt
    assert (media.width, media.height) == image.size
    assert media.image.size == image.size


def test_animated_gif_keeps_first_frame() -> None:
    media = decode(skimage_bytes("no_time_for_that_tiny.gif"), max_pixels=LIMIT)
    assert media.media_format == "GIF"
    assert media.image.tell() == 0


def test_truncated_jpeg_decodes_what_is_there() -> None:
    whole = jpeg_of("astronaut.png")
    media = decode(truncated(whole, 0.5), max_pixels=LIMIT)
    assert media.image.size == (512, 512)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is a text file, not an image\n", "not an image"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
        (jpeg_of()[:600] + b"\xff\x00garbage" * 500, "corrupt image data"),
    ],
    ids=["empty", "text", "pdf", "broken-png-header", "corrupt-jpeg-scan"],
)
def test_not_images_are_unsupported(content: bytes, message: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=message):
        decode(content, max_pixels=LIMIT)


def test_unaccepted_format_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaError, match="PPM is not accepted"):
        decode(encode(photo("chelsea.png"), "PPM"), max_pixels=LIMIT)


def test_pixel_limit_is_checked_from_the_header() -> None:
    bomb = png_header_only(60_000, 60_000)
    with pytest.raises(MediaTooLargeError, match="3600000000 pixels"):
        decode(bomb, max_pixels=LIMIT)


def test_pixel_limit_is_configurable() -> None:
    data = jpeg_of("astronaut.png")
    with pytest.raises(MediaTooLargeError):
        decode(data, max_pixels=512 * 512 - 1)
    assert decode(data, max_pixels=512 * 512).width == 512


def test_draft_decodes_jpeg_at_a_reduced_scale_but_keeps_the_original_size() -> None:
    big = encode(photo("astronaut.png").resize((2048, 2048)), "JPEG")
    media = decode(big, max_pixels=LIMIT, draft=(256, 256))
    assert (media.width, media.height) == (2048, 2048)
    assert media.image.size == (256, 256)
    assert media.reduced
