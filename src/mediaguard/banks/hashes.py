"""The signal types a bank holds, and the one normal form of each hash value."""

from __future__ import annotations

import re
from typing import Literal

from mediaguard.errors import InvalidInputError

SignalType = Literal["pdq", "md5", "sha1", "sha256"]
SIGNAL_TYPES: tuple[str, ...] = ("pdq", "md5", "sha1", "sha256")

_HEX_LENGTHS = {"pdq": 64, "md5": 32, "sha1": 40, "sha256": 64}
_NORMAL = {name: re.compile(f"[0-9a-f]{{{length}}}") for name, length in _HEX_LENGTHS.items()}
_HEX = re.compile(r"[0-9a-f]*")
_BASE36 = re.compile(r"[0-9a-z]*")
_SHA1_BASE36_LENGTH = 31
_SHA1_MAX = (1 << 160) - 1


class InvalidHashError(InvalidInputError, ValueError):
    """A hash value, or a signal type, that a bank cannot hold."""


def normalize_hash(signal_type: str, value: str) -> str:
    """The value in lower-case hex, SHA-1 in base 36 (MediaWiki's ``img_sha1``) converted.

    pdq and sha256 have the same shape, so the type always comes from the caller.
    """
    normal = _NORMAL.get(signal_type)
    if normal is None:
        raise InvalidHashError(
            f"unknown signal type {signal_type!r}: expected one of {', '.join(SIGNAL_TYPES)}"
        )
    text = value.strip().lower()
    if normal.fullmatch(text):
        return text
    if signal_type == "sha1" and len(text) == _SHA1_BASE36_LENGTH:
        return _sha1_from_base36(text)
    raise InvalidHashError(_problem(signal_type, text))


def _problem(signal_type: str, text: str) -> str:
    if not text:
        return f"{signal_type} hash is empty"
    expected = _HEX_LENGTHS[signal_type]
    if len(text) != expected:
        shape = f"{expected} hex characters"
        if signal_type == "sha1":
            shape += f" or {_SHA1_BASE36_LENGTH} base-36 characters"
        return f"{signal_type} hash must be {shape}, got {len(text)}"
    return (
        f"{signal_type} hash must be hex (0-9, a-f), got {_first_bad(text, _HEX)!r} "
        f"in {_clip(text)}"
    )


def _sha1_from_base36(text: str) -> str:
    if not _BASE36.fullmatch(text):
        raise InvalidHashError(
            f"sha1 hash in base 36 must be 0-9 and a-z, got {_first_bad(text, _BASE36)!r}"
        )
    number = int(text, 36)
    if number > _SHA1_MAX:
        raise InvalidHashError(f"sha1 hash in base 36 is larger than 160 bits: {text}")
    return f"{number:040x}"


def _first_bad(text: str, allowed: re.Pattern[str]) -> str:
    return next(char for char in text if not allowed.fullmatch(char))


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
