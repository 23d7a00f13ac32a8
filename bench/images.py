"""The benchmark's images, made at run time from the photos that ship in scikit-image (no download).

small: each photo resized to 640x480 (0.3 MP), every fourth saved as PNG, the rest as JPEG q90.
large: each photo upscaled to 4000x3000 (12 MP) with mild noise so the JPEG (q90) weighs what a
camera original does, 3-4 MB.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "horse.png",
    "hubble_deep_field.jpg", "ihc.png", "logo.png", "microaneurysms.png", "moon.png",
    "motorcycle_left.png", "page.png", "phantom.png", "retina.jpg", "rocket.jpg", "text.png",
)  # fmt: skip
SMALL = (640, 480)
LARGE = (4000, 3000)


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def photos(limit: int | None = None) -> list[tuple[str, Image.Image]]:
    folder = skimage_data_dir()
    out = []
    for name in PHOTOS[:limit]:
        with Image.open(folder / name) as image:
            out.append((name, image.convert("RGB")))
    return out


def _encode(image: Image.Image, fmt: str) -> bytes:
    with io.BytesIO() as buffer:
        image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return buffer.getvalue()


def small_set(limit: int | None = None) -> list[tuple[str, bytes]]:
    return [
        (
            name,
            _encode(rgb.resize(SMALL, Image.Resampling.BICUBIC), "PNG" if i % 4 == 3 else "JPEG"),
        )
        for i, (name, rgb) in enumerate(photos(limit))
    ]


def large_set(limit: int | None = None, *, seed: int = 0) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    out = []
    for name, rgb in photos(limit):
        pixels = np.asarray(rgb.resize(LARGE, Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = pixels + rng.integers(-8, 9, size=pixels.shape, dtype=np.int16)
        out.append(
            (name, _encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG"))
        )
    return out
