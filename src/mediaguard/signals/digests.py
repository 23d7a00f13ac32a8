"""Content digests: MD5, SHA-1 (hex and MediaWiki's base-36) and SHA-256 of the bytes."""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from typing import Literal

from mediaguard.errors import InvalidInputError

DigestKind = Literal["sha1", "sha256"]

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BASE36 = re.compile(r"^[0-9a-z]{31}$")
_SHA1_MAX = (1 << 160) - 1


class ContentDigests:
    """The digests of some bytes, each computed on first use: hashing a 12 MP original takes
    milliseconds per digest, and not every caller needs every digest."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self._content).hexdigest()

    @cached_property
    def sha1(self) -> str:
        return hashlib.sha1(self._content).hexdigest()

    @cached_property
    def md5(self) -> str:
        return hashlib.md5(self._content, usedforsecurity=False).hexdigest()

    @property
    def sha1_base36(self) -> str:
        return sha1_hex_to_base36(self.sha1)


def compute_digests(content: bytes) -> ContentDigests:
    return ContentDigests(content)


def sha1_hex_to_base36(sha1_hex: str) -> str:
    """MediaWiki's `img_sha1`: the SHA-1 in base 36, zero-padded to 31 characters."""
    value = int(sha1_hex, 16)
    digits = []
    while value:
        value, rest = divmod(value, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[rest])
    return "".join(reversed(digits)).rjust(31, "0")


def parse_digest(text: str) -> tuple[DigestKind, str]:
    """Normalise a lookup key: SHA-1 hex, SHA-1 base-36 (MediaWiki) or SHA-256 hex."""
    digest = text.strip().lower()
    if _HEX64.match(digest):
        return "sha256", digest
    if _HEX40.match(digest):
        return "sha1", digest
    if _BASE36.match(digest):
        value = int(digest, 36)
        if value <= _SHA1_MAX:
            return "sha1", f"{value:040x}"
    raise InvalidInputError(
        f"{text[:80]!r} is not a digest: expected SHA-1 (40 hex or 31 base-36) or SHA-256 (64 hex)"
    )
