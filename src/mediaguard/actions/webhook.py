"""Signed takedown webhook: one JSON POST to the platform, retried with backoff and jitter.

Every attempt is signed afresh: ``X-Mediaguard-Signature: sha256=<hex>`` is HMAC-SHA256 with the
shared secret over ``f"{timestamp}.".encode() + body``, the timestamp (integer Unix seconds) being
sent in ``X-Mediaguard-Timestamp``. Signing the timestamp lets receivers refuse replays older than
a few minutes; ``X-Mediaguard-Delivery`` stays the same on every retry so they can deduplicate.
:func:`verify_signature` is the receiver's side of the check.

The URL is set by the operator and trusted, so it does not go through the SSRF-guarded fetcher.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from mediaguard.actions import ActionError
from mediaguard.media.fetch import upstream_failure_is_transient

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ActionError",
    "WebhookConfig",
    "WebhookResult",
    "deliver",
    "encode_payload",
    "sign",
    "verify_signature",
]

TIMESTAMP_HEADER = "X-Mediaguard-Timestamp"
SIGNATURE_HEADER = "X-Mediaguard-Signature"
DELIVERY_HEADER = "X-Mediaguard-Delivery"
USER_AGENT = "mediaguard"

_MAX_EXPONENT = 32  # keeps backoff * 2**n a finite float whatever the attempt count


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    attempts: int = 5
    backoff: float = 0.5  # seconds; the first retry waits up to this long
    max_backoff: float = 30.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.timeout <= 0:
            raise ValueError("backoff and max_backoff must be >= 0, timeout > 0")


@dataclass(frozen=True)
class WebhookResult:
    status_code: int
    attempts: int


@dataclass(frozen=True)
class _Failure:
    reason: str
    retryable: bool
    retry_after: float | None = None


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact JSON with sorted keys."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``; the header value adds ``sha256=``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """True if ``body`` was signed with ``secret`` no more than ``tolerance`` seconds from now.

    ``headers`` are the request's headers (names in any case); ``body`` the raw request body.
    """
    values = {name.lower(): value for name, value in headers.items()}
    timestamp = values.get(TIMESTAMP_HEADER.lower(), "").strip()
    signature = values.get(SIGNATURE_HEADER.lower(), "").strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    expected = f"sha256={sign(secret, int(timestamp), body)}"
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def deliver(
    config: WebhookConfig,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookResult:
    """POST ``payload`` until a 2xx, a permanent failure or the last attempt.

    Raises :class:`ActionError`, transient if the last failure was retryable (connection error,
    timeout, 5xx, 408, 425, 429). Redirects are not followed: a 3xx is a permanent failure.
    """
    body = encode_payload(payload)
    http = client if client is not None else httpx.Client(trust_env=False, timeout=config.timeout)
    try:
        attempt = 0
        while True:
            attempt += 1
            outcome = _attempt(http, config, body, delivery_id)
            if isinstance(outcome, int):
                return WebhookResult(status_code=outcome, attempts=attempt)
            if not outcome.retryable or attempt >= config.attempts:
                plural = "" if attempt == 1 else "s"
                raise ActionError(
                    f"webhook delivery {delivery_id} failed after {attempt} attempt{plural}: "
                    f"{outcome.reason}",
                    transient=outcome.retryable,
                )
            sleep(_delay(config, attempt - 1, outcome.retry_after))
    finally:
        if client is None:
            http.close()


def _attempt(
    client: httpx.Client, config: WebhookConfig, body: bytes, delivery_id: str
) -> int | _Failure:
    """One signed POST: the 2xx status on success, else why it failed."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"sha256={sign(config.secret, timestamp, body)}",
        DELIVERY_HEADER: delivery_id,
    }
    try:
        # Streamed and never read: the receiver's answer is its status, not its body.
        with client.stream(
            "POST",
            config.url,
            content=body,
            headers=headers,
            timeout=config.timeout,
            follow_redirects=False,
        ) as response:
            status = response.status_code
            retry_after = response.headers.get("Retry-After")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
        return _Failure(f"request not sendable: {error}", retryable=False)
    except httpx.TimeoutException as error:
        return _Failure(f"timed out ({type(error).__name__})", retryable=True)
    except httpx.TransportError as error:
        return _Failure(f"{type(error).__name__}: {error}", retryable=True)
    if 200 <= status < 300:
        return status
    if upstream_failure_is_transient(status):
        return _Failure(f"HTTP {status}", retryable=True, retry_after=_seconds(retry_after))
    return _Failure(f"HTTP {status}", retryable=False)


def _seconds(retry_after: str | None) -> float | None:
    """A ``Retry-After`` given in seconds; None if absent or not a number (e.g. an HTTP date)."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _delay(config: WebhookConfig, retry: int, retry_after: float | None) -> float:
    """Seconds before retry number ``retry`` (0-based): the server's wish, else full jitter."""
    if retry_after is not None:
        return min(config.max_backoff, retry_after)
    ceiling = min(config.max_backoff, config.backoff * 2 ** min(retry, _MAX_EXPONENT))
    return random.uniform(0, ceiling)
