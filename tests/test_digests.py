from __future__ import annotations

import hashlib

import pytest

from mediaguard.errors import InvalidInputError
from mediaguard.signals.digests import compute_digests, parse_digest, sha1_hex_to_base36

EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
# MediaWiki's img_sha1 of the empty file
EMPTY_SHA1_BASE36 = "phoiac9h4m842xq45sp7s6u21eteeq1"


def test_digests_of_bytes() -> None:
    digests = compute_digests(b"")
    assert digests.sha1 == EMPTY_SHA1
    assert digests.sha256 == hashlib.sha256(b"").hexdigest()
    assert digests.md5 == "d41d8cd98f00b204e9800998ecf8427e"
    assert digests.sha1_base36 == EMPTY_SHA1_BASE36


@pytest.mark.parametrize(
    "sha1",
    [EMPTY_SHA1, "0" * 39 + "1", "f" * 40, hashlib.sha1(b"mediaguard").hexdigest()],
)
def test_base36_round_trip_is_31_chars(sha1: str) -> None:
    base36 = sha1_hex_to_base36(sha1)
    assert len(base36) == 31
    assert parse_digest(base36) == ("sha1", sha1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EMPTY_SHA1.upper(), ("sha1", EMPTY_SHA1)),
        (f"  {EMPTY_SHA1}\n", ("sha1", EMPTY_SHA1)),
        (EMPTY_SHA1_BASE36, ("sha1", EMPTY_SHA1)),
        ("a" * 64, ("sha256", "a" * 64)),
    ],
)
def test_parse_digest(text: str, expected: tuple[str, str]) -> None:
    assert parse_digest(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "g" * 40, "a" * 63, "z" * 31, "a" * 65, "../../etc/passwd", "1" * 32]
)
def test_parse_digest_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_digest(text)
