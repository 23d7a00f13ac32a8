"""Every hash of one file, from its bytes and its single decode: what banks are matched on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mediaguard.media.decode import DecodedMedia
from mediaguard.signals.digests import ContentDigests, compute_digests
from mediaguard.signals.pdq import PdqHash, pdq_hash


@dataclass(frozen=True)
class MediaHashes:
    sha256: str
    sha1: str
    sha1_base36: str
    md5: str
    pdq: PdqHash | None  # None when only the bytes were hashed

    def signals(self) -> dict[str, str]:
        """signal_type -> value, the way banks store them."""
        found = {"md5": self.md5, "sha1": self.sha1, "sha256": self.sha256}
        if self.pdq is not None:
            found["pdq"] = self.pdq.hex
        return found

    def item_fields(self) -> dict[str, Any]:
        """The columns an item keeps of these hashes."""
        pdq = self.pdq
        return {
            "sha256": self.sha256,
            "sha1": self.sha1,
            "md5": self.md5,
            "pdq": pdq.hex if pdq else None,
            "pdq_quality": pdq.quality if pdq else None,
        }


def hash_media(media: DecodedMedia, digests: ContentDigests | None = None) -> MediaHashes:
    """``digests``: of ``media.content``, when the caller has them already."""
    digests = digests or compute_digests(media.content)
    return MediaHashes(
        sha256=digests.sha256,
        sha1=digests.sha1,
        sha1_base36=digests.sha1_base36,
        md5=digests.md5,
        pdq=pdq_hash(media.image),
    )
