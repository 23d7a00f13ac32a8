from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from PIL import Image
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

from mediaguard.media.decode import decode
from mediaguard.signals.pdq import (
    DEFAULT_THRESHOLD,
    MIN_MATCH_QUALITY,
    PdqHash,
    hamming_distance,
    pdq_hash,
    to_rgb,
)

from fixtures.images import REAL_PHOTOS, encode, jpeg_of, photo, transformed_copies

LIMIT = 10**8
# Colour photos of a few hundred pixels, and a grey one: quick to transform and hash.
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")
TRANSFORMED_PHOTOS = (*PHOTOS, "camera.png")
TRANSFORMS = (
    "half-jpeg",
    "thumb320-jpeg",
    "jpeg-q50",
    "crop1pct-png",
    "grey-png",
    "grey16-png",
    "palette-png",
    "palette-transparent-png",
    "cmyk-jpeg",
    "rgba-opaque-png",
    "rgba-feathered-png",
    "la-feathered-png",
    "webp",
)


@cache
def original_hash(name: str) -> PdqHash:
    return pdq_hash(photo(name))


@cache
def copies(name: str) -> dict[str, bytes]:
    return transformed_copies(photo(name))


def hash_of(content: bytes) -> PdqHash:
    return pdq_hash(decode(content, max_pixels=LIMIT).image)


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_jpeg_hash_equals_threatexchange(name: str) -> None:
    content = jpeg_of(name)
    ours = hash_of(content)
    assert (ours.hex, ours.quality) == pdq_from_bytes(content)
    assert ours.matchable


@pytest.mark.parametrize(
    ("name", "fmt", "mode"), [("camera.png", "PNG", "L"), ("coffee.png", "PNG", "RGBA")]
)
def test_grey_and_opaque_rgba_hash_equals_threatexchange(name: str, fmt: str, mode: str) -> None:
    content = encode(photo(name).convert(mode), fmt)
    ours = hash_of(content)
    assert (ours.hex, ours.quality) == pdq_from_bytes(content)


def test_transformed_copies_are_the_listed_ones() -> None:
    assert tuple(copies("chelsea.png")) == TRANSFORMS


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", TRANSFORMED_PHOTOS)
def test_transformed_copy_is_within_threshold(
    name: str, transform: str, record_property: Callable[[str, object], None]
) -> None:
    distance = hamming_distance(original_hash(name).hex, hash_of(copies(name)[transform]).hex)
    record_property("distance", distance)
    assert distance <= DEFAULT_THRESHOLD, f"{name} {transform}: {distance} bits"


@pytest.mark.parametrize("transform", ["palette-png", "cmyk-jpeg"])
@pytest.mark.parametrize("name", PHOTOS)
def test_hashing_without_rgb_conversion_is_far(name: str, transform: str) -> None:
    """ThreatExchange hashes the raw pixel array: palette indices and CMYK ink are not RGB."""
    content = copies(name)[transform]
    original = original_hash(name).hex
    raw, _ = pdq_from_bytes(content)
    converted = hash_of(content).hex
    assert hamming_distance(original, raw) > DEFAULT_THRESHOLD
    assert hamming_distance(original, converted) <= DEFAULT_THRESHOLD


def test_different_photos_are_far_apart() -> None:
    hashes = {name: original_hash(name).hex for name in REAL_PHOTOS}
    distances = {
        (a, b): hamming_distance(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2)
    }
    near = {pair: distance for pair, distance in distances.items() if distance <= DEFAULT_THRESHOLD}
    assert not near, f"distinct photos within the threshold: {near}"


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"]
)
def test_every_mode_hashes_close_to_rgb(mode: str) -> None:
    rgb = photo("coffee.png")
    image = rgb.convert("RGBA" if mode == "RGBa" else "LA" if mode == "La" else mode)
    image = image.convert(mode)
    assert image.mode == mode
    assert hamming_distance(original_hash("coffee.png").hex, pdq_hash(image).hex) <= 4


@pytest.mark.parametrize(
    ("mode", "scale"),
    [("I;16", 257.0), ("I", 257.0), ("I", 1.0), ("F", 1.0), ("F", 1 / 255), ("F", 16843009.0)],
    ids=["I;16-16bit", "I-16bit", "I-8bit", "F-8bit", "F-unit", "F-32bit"],
)
def test_deep_grey_is_scaled_not_clipped(mode: str, scale: float) -> None:
    grey = photo("camera.png")
    values = np.asarray(grey, dtype=np.float64) * scale
    deep = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.float32))
    deep = deep if deep.mode == mode else deep.convert(mode)
    assert deep.mode == mode
    assert np.asarray(to_rgb(deep).convert("L")).max() >= 250
    assert hamming_distance(original_hash("camera.png").hex, pdq_hash(deep).hex) <= 2


@pytest.mark.parametrize("name", PHOTOS[:2])
def test_partial_transparency_keeps_the_hash_of_the_colours(name: str) -> None:
    """Alpha is dropped: a half-transparent copy is the original photo, not a washed-out one."""
    faded = photo(name).convert("RGBA")
    faded.putalpha(128)
    assert pdq_hash(faded) == original_hash(name)


def test_flat_image_is_not_matchable() -> None:
    flat = pdq_hash(Image.new("RGB", (640, 480), (200, 30, 30)))
    assert flat.quality < MIN_MATCH_QUALITY
    assert not flat.matchable


def test_tiny_image_hashes_with_zero_quality() -> None:
    assert pdq_hash(Image.new("RGB", (2, 2), (10, 200, 30))).quality == 0


def test_hash_is_64_lower_case_hex() -> None:
    result = original_hash("astronaut.png")
    assert len(result.hex) == 64
    assert result.hex == result.hex.lower()
    assert 0 <= result.quality <= 100


@pytest.mark.parametrize(
    ("hex_digits", "quality"), [("0" * 63, 50), ("A" * 64, 50), ("g" * 64, 50), ("0" * 64, 101)]
)
def test_pdq_hash_rejects_malformed_values(hex_digits: str, quality: int) -> None:
    with pytest.raises(ValueError, match="PDQ"):
        PdqHash(hex=hex_digits, quality=quality)


@pytest.mark.parametrize(("quality", "matchable"), [(0, False), (49, False), (50, True)])
def test_matchable_from_quality(quality: int, matchable: bool) -> None:
    assert PdqHash(hex="0" * 64, quality=quality).matchable is matchable


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("0" * 64, "0" * 64, 0),
        ("0" * 64, "f" * 64, 256),
        ("0" * 64, "F" * 64, 256),
        ("0" * 63 + "1", "0" * 64, 1),
        ("8" + "0" * 63, "0" * 64, 1),
        ("0f" * 32, "f0" * 32, 256),
        ("01" * 32, "00" * 32, 32),
    ],
)
def test_hamming_distance_known_values(a: str, b: str, distance: int) -> None:
    assert hamming_distance(a, b) == distance
    assert hamming_distance(b, a) == distance


@pytest.mark.parametrize(
    "malformed",
    ["", "0" * 63, "0" * 65, "g" + "0" * 63, "0" * 64 + "\n", "0x" + "0" * 62, " " + "0" * 63],
    ids=["empty", "short", "long", "not-hex", "newline", "0x-prefix", "space"],
)
def test_hamming_distance_rejects_malformed_input(malformed: str) -> None:
    with pytest.raises(ValueError, match="not a PDQ hash"):
        hamming_distance(malformed, "0" * 64)
    with pytest.raises(ValueError, match="not a PDQ hash"):
        hamming_distance("0" * 64, malformed)
