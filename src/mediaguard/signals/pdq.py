"""PDQ: Meta's 256-bit perceptual hash, for matching re-encoded, resized and lightly edited copies.

Hashes of RGB images are byte-for-byte those of ThreatExchange's Python hasher (`pdq_from_bytes`,
which the Hasher-Matcher-Actioner uses). Two hashes within `DEFAULT_THRESHOLD` bits are taken for
the same picture; a hash of quality below `MIN_MATCH_QUALITY` (flat or nearly featureless images)
should not be matched at all.

Colour: every image is converted to 8-bit RGB first. Hashing the raw pixel array instead, as
ThreatExchange does, reads palette indices as grey levels and CMYK ink as RGB: on real photos a
palette PNG lands 200-256 bits from the original and a CMYK JPEG 256 (the inverse). Alpha is
dropped, not composited onto a white background:

- an opaque alpha channel gives the same hash either way;
- over intact colours (a uniform 50 % alpha, a feathered vignette, a cut-out that keeps the
  colours under its transparent pixels), dropping alpha stays 0 bits from the original photo while
  compositing onto white lands 46-100 bits away: an alpha mask would be a free way to evade a
  match. Dropping alpha is also what ThreatExchange's hasher does for RGBA.

The cost: a copy flattened onto a background (a screenshot) of an image whose transparent pixels
hide other colours may not match it. Grey images of more than 8 bits (I;16, I, F) are scaled
linearly onto 0..255: Pillow's own conversion clips at 255 and turns a 16-bit photo white.

Size: the hash is computed at the size decoded. `pdqhash.compute` (Meta's C++) is not called:
`mediaguard.signals.pdq_fast` is a numba port of it that gives the same bits and quality (checked in
tests/test_pdq.py on photos, flat and noise images from 5 x 5 to 12 MP) in a fraction of the time
and without holding the GIL: 4-6 ms for 1 MP and about 45 ms for 12 MP, against 55 ms and 0.75-0.8 s
(0.3 MP: 1.2-2 ms against 7-9 ms; bench/pdq_hashing.py). Its first call in a process compiles it
(about 10 s), once per installation where numba can write its on-disk cache (see pdq_fast); loading
it from there takes about half a second. Reducing a large image first to a longer side <= 1024 moved
the hash 0-10 bits on real photos upscaled to 12 MP and 12 bits on a real 1411 x 1411 photo (<=
2048: 0-8 bits). That is more than a couple of bits off ThreatExchange's hash, so nothing is
downscaled here. (Meta's C++ command-line hasher does squash anything over 512 px to 512 x 512
first, so its hashes of large images differ from the Python ones by a few bits anyway.) A JPEG
decoded at a reduced DCT scale (`decode(..., draft=(1024, 1024))`: half scale for 12 MP) is hashed
at that scale, 0-8 bits from the full-size hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

PDQ_VERSION = "pdq-1"
MIN_MATCH_QUALITY = 50
DEFAULT_THRESHOLD = 31

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX64_ANY_CASE = re.compile(r"[0-9a-fA-F]{64}")
# Modes with more than 8 bits per grey pixel, and the value ranges they commonly hold.
_DEEP_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_FULL_SCALES = (1.0, 255.0, 65535.0, 4294967295.0)


@dataclass(frozen=True)
class PdqHash:
    """A PDQ hash as 64 lower-case hex digits, and its quality 0..100."""

    hex: str
    quality: int

    def __post_init__(self) -> None:
        if not _HEX64.fullmatch(self.hex):
            raise ValueError(f"{self.hex[:80]!r} is not a PDQ hash: expected 64 lower-case hex")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"PDQ quality {self.quality} is outside 0..100")

    @property
    def matchable(self) -> bool:
        return self.quality >= MIN_MATCH_QUALITY


def pdq_hash(image: Image.Image) -> PdqHash:
    """The PDQ hash of a decoded image, whatever its mode: bit for bit `pdqhash.compute`'s of its
    RGB pixels, computed by `pdq_fast` (which releases the GIL)."""
    pixels = np.asarray(to_rgb(image), dtype=np.uint8)
    from mediaguard.signals import pdq_fast  # numba loads with the first hash, not every import

    bits, quality = pdq_fast.compute(pixels)
    # `bits` runs from the most significant bit down, as in ThreatExchange's hex strings.
    return PdqHash(hex=pdq_fast.hash_bits(bits), quality=quality)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as PDQ needs it: alpha dropped, palettes and CMYK resolved, deep grey scaled."""
    if image.mode == "RGB":
        return image
    if image.mode in _DEEP_MODES:
        return _deep_grey_to_l(image).convert("RGB")
    if image.mode == "La":  # premultiplied; Pillow converts it to LA but not to RGB
        image = image.convert("LA")
    return image.convert("RGB")


def _deep_grey_to_l(image: Image.Image) -> Image.Image:
    """Scale the smallest usual range holding the values (0..1, 8, 16 or 32 bits) onto 0..255."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    peak = float(values.max(initial=0.0))
    full_scale = next((scale for scale in _FULL_SCALES if peak <= scale), peak)
    scaled = np.clip(values * (255.0 / full_scale), 0.0, 255.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def hamming_distance(a: str, b: str) -> int:
    """The number of differing bits between two 64-hex-digit PDQ hashes."""
    for value in (a, b):
        if not _HEX64_ANY_CASE.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a PDQ hash: expected 64 hex digits")
    return (int(a, 16) ^ int(b, 16)).bit_count()
