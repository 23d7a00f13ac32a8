"""The one guarded URL fetcher: every URL mediaguard fetches goes through :class:`GuardedFetcher`.

It defends against server-side request forgery in layers:

* the URL is parsed strictly (http/https, no credentials, a plain host, a valid port) and checked
  against the host allowlist, on the first request and on every redirect hop;
* IP literals in the host, in every spelling ``inet_aton`` accepts, are refused before any
  connection is attempted;
* the address check that matters happens in the network backend, after DNS resolution, on the
  very address connected to: a name is resolved once, refused if *any* answer is disallowed,
  and the socket is opened to the checked IP, so DNS rebinding has no second lookup to exploit;
* the body is streamed with a running byte count and a whole-fetch deadline.

This module holds the public surface: :class:`FetchPolicy`, :class:`FetchedMedia`, the fetcher
itself and URL checking. The address and host rules live in :mod:`mediaguard.media.addresses`,
the guarded network backend, httpx transport and deadline in :mod:`mediaguard.media.transport`.
"""

from __future__ import annotations

import http.cookiejar
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from mediaguard.errors import FetchFailedError, MediaTooLargeError, UrlRefusedError
from mediaguard.media.addresses import (
    Resolver,
    default_resolver,
    host_allowed,
    literal_refusal,
    normalise_host,
)
from mediaguard.media.transport import (
    DEADLINE,
    Deadline,
    GuardedBackend,
    GuardedTransport,
    translated_errors,
)

if TYPE_CHECKING:
    from mediaguard.config import Settings

__all__ = ["FetchPolicy", "FetchedMedia", "GuardedFetcher"]

_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may reach and how long and how much it may take."""

    max_bytes: int
    allowed_hosts: tuple[str, ...] = ()
    allow_loopback: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 30.0
    max_redirects: int = 5
    user_agent: str = "mediaguard"

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            max_bytes=settings.max_image_bytes,
            allowed_hosts=tuple(settings.fetch_allowed_hosts),
            allow_loopback=settings.fetch_allow_loopback,
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            total_timeout=settings.fetch_total_timeout,
            max_redirects=settings.fetch_max_redirects,
            user_agent=settings.fetch_user_agent,
        )


@dataclass(frozen=True)
class FetchedMedia:
    url: str
    final_url: str
    content: bytes
    content_type: str | None


# --------------------------------------------------------------------------- URLs


def _check_url(url: httpx.URL, policy: FetchPolicy) -> None:
    """Raise UrlRefusedError unless ``url`` may be requested under ``policy``."""
    if url.scheme not in _SCHEMES:
        raise UrlRefusedError(f"scheme {url.scheme!r} is not allowed (http and https only)")
    if url.userinfo:
        raise UrlRefusedError("credentials in the URL are not allowed")
    host = normalise_host(url.raw_host.decode("ascii", "replace"))
    if not host:
        raise UrlRefusedError("the URL has no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise UrlRefusedError(f"port {url.port} is out of range")
    if policy.allowed_hosts and not host_allowed(host, policy.allowed_hosts):
        raise UrlRefusedError(f"host {host!r} is not in the allowlist")
    reason = literal_refusal(host, allow_loopback=policy.allow_loopback)
    if reason is not None:
        raise UrlRefusedError(reason)


def _has_unsafe_characters(text: str) -> bool:
    return any(char.isspace() or ord(char) < 0x20 or char in "\\\x7f" for char in text)


def _parse_url(raw: str, policy: FetchPolicy) -> httpx.URL:
    if _has_unsafe_characters(raw):
        raise UrlRefusedError("the URL contains whitespace, control characters or backslashes")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise UrlRefusedError(f"malformed URL: {exc}") from exc
    _check_url(url, policy)
    return url


def check_url(raw: str, policy: FetchPolicy) -> None:
    """Refuse a URL that no fetch under ``policy`` could make, without resolving its host: what
    intake checks before accepting a notification. The fetch itself checks again after DNS."""
    _parse_url(raw, policy)


class _NoCookies(http.cookiejar.CookieJar):
    """Fetches for unrelated callers share one client: never carry cookies between them."""

    def __init__(self) -> None:
        super().__init__(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


# --------------------------------------------------------------------------- fetcher


class GuardedFetcher:
    """Fetches URLs under a :class:`FetchPolicy`. Thread-safe; one connection pool."""

    def __init__(self, policy: FetchPolicy, *, resolver: Resolver | None = None) -> None:
        self._policy = policy
        backend = GuardedBackend(resolver or default_resolver, allow_loopback=policy.allow_loopback)
        self._client = httpx.Client(
            transport=GuardedTransport(backend),
            follow_redirects=False,
            trust_env=False,
            cookies=_NoCookies(),
            timeout=httpx.Timeout(
                connect=policy.connect_timeout,
                read=policy.read_timeout,
                write=policy.read_timeout,
                pool=policy.connect_timeout,
            ),
            headers={
                "User-Agent": policy.user_agent,
                "Accept": "image/*, */*;q=0.8",
                "Accept-Encoding": "identity",
            },
        )

    @property
    def policy(self) -> FetchPolicy:
        return self._policy

    def fetch(self, url: str) -> FetchedMedia:
        """GET ``url`` under the policy, following redirects, and return the body."""
        current = _parse_url(url, self._policy)
        total = self._policy.total_timeout
        token = DEADLINE.set(Deadline(at=time.monotonic() + total, total=total))
        try:
            with translated_errors():
                return self._follow(url, current)
        finally:
            DEADLINE.reset(token)

    def _follow(self, requested: str, current: httpx.URL) -> FetchedMedia:
        redirects = 0
        while True:
            response = self._client.send(self._client.build_request("GET", current), stream=True)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    if redirects >= self._policy.max_redirects:
                        raise FetchFailedError(
                            f"too many redirects (more than {self._policy.max_redirects})",
                            transient=False,
                        )
                    current = self._redirect_target(current, response)
                    redirects += 1
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchFailedError(
                        f"upstream returned HTTP {response.status_code}",
                        transient=upstream_failure_is_transient(response.status_code),
                    )
                content = self._read_body(response)
            finally:
                response.close()
            return FetchedMedia(
                url=requested,
                final_url=str(current),
                content=content,
                content_type=response.headers.get("content-type"),
            )

    def _redirect_target(self, current: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location", "").strip()
        status = response.status_code
        if not location or _has_unsafe_characters(location) or not location.isascii():
            raise FetchFailedError(
                f"malformed redirect (HTTP {status}): bad Location header", transient=False
            )
        try:
            target = current.join(location)
        except httpx.InvalidURL as exc:
            raise FetchFailedError(
                f"malformed redirect (HTTP {status}): {exc}", transient=False
            ) from exc
        try:
            _check_url(target, self._policy)
        except UrlRefusedError as exc:
            raise UrlRefusedError(f"redirect to {target} refused: {exc.message}") from exc
        return target

    def _read_body(self, response: httpx.Response) -> bytes:
        limit = self._policy.max_bytes
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # Decoding would let a small compressed body expand past the limit before counting.
            raise FetchFailedError(f"unsupported Content-Encoding {encoding!r}", transient=False)
        declared = _content_length(response)
        if declared is not None and declared > limit:
            raise MediaTooLargeError(
                f"Content-Length {declared} exceeds the limit of {limit} bytes"
            )
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > limit:
                raise MediaTooLargeError(f"the body exceeds the limit of {limit} bytes")
        return bytes(body)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GuardedFetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def upstream_failure_is_transient(status: int) -> bool:
    """Server errors, timeouts and rate limits may pass; any other 4xx will not."""
    return status >= 500 or status in (408, 425, 429)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value.split(",")[0].strip())
    except ValueError:
        return None
