from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from functools import cache

import numpy as np
import numpy.typing as npt
import pdqhash
import pytest
from PIL import Image
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

from mediaguard.media.decode import decode
from mediaguard.signals import pdq_fast
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


# --- pdq_fast: bit for bit pdqhash.compute ------------------------------------------------------

# (width, height): the smallest hashable, thin, around the 64 x 64 special case (taken as it is,
# no filter), odd sizes on either side of a window-size step (128 and 512 px), camera sizes.
EXACT_SIZES = (
    (5, 5), (7, 300), (300, 7), (63, 64), (64, 63), (64, 64), (65, 65), (127, 129), (257, 255),
    (511, 513), (640, 480), (1152, 864), (2000, 1500),
)  # fmt: skip
# 12 MP, upscaled: a colour photo and the grey one.
LARGE_PHOTOS = ("astronaut.png", "camera.png")
NOISE_SEEDS = range(50)


def rgb_pixels(name: str, size: tuple[int, int] | None = None) -> npt.NDArray[np.uint8]:
    image = photo(name).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image)


def assert_same_as_pdqhash(pixels: npt.NDArray[np.uint8]) -> None:
    """Same hex, same quality, and (hashable sizes) the same float32 DCT coefficients."""
    peer_bits, peer_quality = pdqhash.compute(pixels)
    bits, quality = pdq_fast.compute(pixels)
    peer_hex = np.packbits(np.asarray(peer_bits, dtype=np.uint8)).tobytes().hex()
    assert (pdq_fast.hash_bits(bits), quality) == (peer_hex, peer_quality), pixels.shape
    if min(pixels.shape[:2]) >= 5:
        peer_float, _ = pdqhash.compute_float(pixels)
        ours_float, _ = pdq_fast.compute_float(pixels)
        assert ours_float.dtype == np.float32
        np.testing.assert_array_equal(ours_float, peer_float.astype(np.float32))


@pytest.mark.parametrize("size", EXACT_SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_fast_hash_is_pdqhash_on_resized_photos(name: str, size: tuple[int, int]) -> None:
    assert_same_as_pdqhash(rgb_pixels(name, size))


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_fast_hash_is_pdqhash_on_photos_as_they_are(name: str) -> None:
    assert_same_as_pdqhash(rgb_pixels(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE_PHOTOS)
def test_fast_hash_is_pdqhash_on_12_megapixels(name: str) -> None:
    assert_same_as_pdqhash(rgb_pixels(name, (4000, 3000)))


@pytest.mark.parametrize("seed", NOISE_SEEDS)
def test_fast_hash_is_pdqhash_on_noise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = (int(side) for side in rng.integers(5, 1501, size=2))
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if seed % 2:  # random walks (mod 256) along rows or columns: structure at every scale
        noise = np.cumsum(noise, axis=seed % 4 // 2, dtype=np.uint8)
    assert_same_as_pdqhash(noise)


@pytest.mark.parametrize("size", [(5, 5), (64, 64), (65, 65), (640, 480), (1152, 864)])
@pytest.mark.parametrize(
    "colour",
    [(0, 0, 0), (255, 255, 255), (128, 128, 128), (200, 30, 30), (1, 2, 3)],
    ids=["black", "white", "grey", "red", "near-black"],
)
def test_fast_hash_is_pdqhash_on_flat_images(
    colour: tuple[int, int, int], size: tuple[int, int]
) -> None:
    assert_same_as_pdqhash(np.asarray(Image.new("RGB", size, colour)))


@pytest.mark.parametrize(
    "kind", ["gradient", "stripes", "checkerboard", "one-dot", "grey-photo", "grey-photo-shifted"]
)
def test_fast_hash_is_pdqhash_on_synthetic_images(kind: str) -> None:
    height, width = 480, 640
    y, x = np.mgrid[0:height, 0:width]
    if kind == "gradient":
        grey = (x + y) * 255 // (height + width)
    elif kind == "stripes":
        grey = np.where(x % 16 < 8, 250, 5)
    elif kind == "checkerboard":
        grey = np.where((x // 40 + y // 40) % 2, 255, 0)
    elif kind == "one-dot":
        grey = np.where((x == 320) & (y == 240), 255, 0)
    else:
        grey = np.asarray(photo("camera.png").resize((width, height)), dtype=np.int64)
        grey = grey + (3 if kind == "grey-photo-shifted" else 0)
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    assert_same_as_pdqhash(np.ascontiguousarray(np.stack([grey] * 3, axis=-1)))


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (4, 300), (300, 4), (2, 2)])
def test_fast_hash_of_tiny_images_is_zero(size: tuple[int, int]) -> None:
    pixels = np.asarray(Image.new("RGB", size, (10, 200, 30)))
    assert_same_as_pdqhash(pixels)
    bits, quality = pdq_fast.compute(pixels)
    assert (pdq_fast.hash_bits(bits), quality) == ("0" * 64, 0)


def test_empty_image_hashes_with_zero_quality() -> None:
    """pdqhash raises IndexError on an image without pixels; here it is a tiny image."""
    assert pdq_hash(Image.new("RGB", (0, 0))) == PdqHash(hex="0" * 64, quality=0)
    with pytest.raises(ValueError, match="empty"):
        pdq_fast.compute_float(np.zeros((0, 8, 3), dtype=np.uint8))


def test_fast_hash_takes_strided_views() -> None:
    pixels = rgb_pixels("chelsea.png")
    view = pixels[::2, ::-3]
    assert not view.flags.c_contiguous
    assert pdq_fast.hash_bits(pdq_fast.compute(view)[0]) == pdq_fast.hash_bits(
        pdq_fast.compute(view.copy())[0]
    )
    assert_same_as_pdqhash(view)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((64, 64), np.uint8), ((64, 64, 4), np.uint8), ((64, 64, 1), np.uint8), ((64, 64, 3), float)],
)
def test_fast_hash_rejects_non_rgb_arrays(shape: tuple[int, ...], dtype: type) -> None:
    with pytest.raises(ValueError, match="uint8 RGB array"):
        pdq_fast.compute(np.zeros(shape, dtype=dtype))


def test_fast_hash_gives_the_same_hashes_in_parallel_threads() -> None:
    """The compiled code releases the GIL: threads hashing at once must not disturb each other."""
    images = [rgb_pixels(name, (700 + 13 * i, 500 + 7 * i)) for i, name in enumerate(REAL_PHOTOS)]
    expected = [pdq_fast.hash_bits(pdq_fast.compute(image)[0]) for image in images]
    results: dict[tuple[int, int], str] = {}

    def work(worker: int) -> None:
        for _ in range(3):
            for i, image in enumerate(images):
                results[worker, i] = pdq_fast.hash_bits(pdq_fast.compute(image)[0])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[worker, i] == expected[i] for worker in range(4) for i in range(len(images)))


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_pdq_hash_is_pdqhash_of_the_rgb_pixels(name: str) -> None:
    image = photo(name)
    peer_bits, peer_quality = pdqhash.compute(np.asarray(to_rgb(image)))
    peer_hex = np.packbits(np.asarray(peer_bits, dtype=np.uint8)).tobytes().hex()
    assert pdq_hash(image) == PdqHash(hex=peer_hex, quality=peer_quality)
