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
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from mediaguard.errors import (
    FetchFailedError,
    FetchTimeoutError,
    MediaguardError,
    MediaTooLargeError,
    UrlRefusedError,
)

if TYPE_CHECKING:
    from mediaguard.config import Settings

__all__ = [
    "FetchPolicy",
    "FetchedMedia",
    "GuardedFetcher",
    "Resolver",
    "address_refusal",
    "default_resolver",
    "host_allowed",
    "parse_ip_literal",
    "parse_ipv4_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_SCHEMES = frozenset({"http", "https"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HOSTNAME_CHARS = re.compile(r"[a-z0-9._-]+")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HEX_PART = re.compile(r"0x[0-9a-f]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)

# Checked after loopback and embedded-IPv4 handling; the ipaddress properties back these up.
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified ('this network') address"),
        ("10.0.0.0/8", "private address"),
        ("172.16.0.0/12", "private address"),
        ("192.168.0.0/16", "private address"),
        ("100.64.0.0/10", "shared (CGNAT) address"),
        ("169.254.0.0/16", "link-local address"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation address"),
        ("198.51.100.0/24", "documentation address"),
        ("203.0.113.0/24", "documentation address"),
        ("192.88.99.0/24", "6to4 relay anycast address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved address"),
        ("::/128", "unspecified address"),
        ("64:ff9b:1::/48", "local-use NAT64 address"),
        ("100::/64", "discard-only address"),
        ("2001::/32", "Teredo address"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation address"),
        ("3fff::/20", "documentation address"),
        ("fc00::/7", "private (unique local) address"),
        ("fe80::/10", "link-local address"),
        ("fec0::/10", "site-local address"),
        ("ff00::/8", "multicast address"),
    )
)

_PROPERTY_REASONS = (
    ("is_unspecified", "unspecified address"),
    ("is_multicast", "multicast address"),
    ("is_link_local", "link-local address"),
    ("is_site_local", "site-local address"),
    ("is_private", "private address"),
    ("is_reserved", "reserved address"),
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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


# --------------------------------------------------------------------------- addresses


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``inet_aton`` would read from ``host``, or None if it is not one.

    Accepts 1 to 4 dot-separated parts, each decimal, octal (leading ``0``) or hex (``0x``);
    the last part fills the remaining bytes: ``127.1``, ``0x7f.1``, ``2130706433``.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_inet_aton_part(part) for part in parts]
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    *leading, last = numbers
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    packed = last
    for index, value in enumerate(leading):
        packed |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(packed)


def _inet_aton_part(part: str) -> int | None:
    text = part.lower()
    if _HEX_PART.fullmatch(text):
        return int(text[2:], 16) if len(text) > 2 else 0
    if _OCTAL_PART.fullmatch(text):
        return int(text, 8)
    if _DECIMAL_PART.fullmatch(text):
        return int(text, 10)
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IPv6 literal (brackets optional) or an inet_aton-style IPv4 literal, else None."""
    text = host.strip("[]") if host.startswith("[") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return parse_ipv4_literal(text)


def address_refusal(address: str | IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` must not be connected to, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))
    if ip in _METADATA_ADDRESSES:
        return "cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "loopback address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return _embedded_refusal(ip, *embedded, allow_loopback=allow_loopback)
    for network, reason in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    for attribute, reason in _PROPERTY_REASONS:
        if getattr(ip, attribute, False):
            return reason
    return None if ip.is_global else "non-global address"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip)), "IPv4-compatible"
    return None


def _embedded_refusal(
    ip: ipaddress.IPv6Address, v4: ipaddress.IPv4Address, kind: str, *, allow_loopback: bool
) -> str | None:
    if kind == "IPv4-mapped":  # the same socket address as the IPv4 one, so the same verdict
        return address_refusal(v4, allow_loopback=allow_loopback)
    # Translated forms reach the IPv4 host through a gateway: never a loopback exception.
    reason = address_refusal(v4)
    if reason is not None:
        return f"{kind} address embedding {v4} ({reason})"
    if kind == "IPv4-compatible":
        return "deprecated IPv4-compatible address"
    return None


def default_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, via the system resolver."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in answers:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# --------------------------------------------------------------------------- URLs and hosts


def _normalise_host(host: str) -> str:
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` matches the allowlist (``*.example.org`` also matches example.org)."""
    host = _normalise_host(host)
    for entry in allowed_hosts:
        pattern = _normalise_host(entry.strip())
        if pattern.startswith("*."):
            suffix = pattern[2:]
            if host == suffix or host.endswith("." + suffix):
                return True
        elif host == pattern:
            return True
    return False


def _ends_in_number(host: str) -> bool:
    """WHATWG's rule: a host whose last label is numeric must be a valid IPv4 address."""
    return bool(_NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]))


def _literal_refusal(host: str, *, allow_loopback: bool) -> str | None:
    literal = parse_ip_literal(host)
    if literal is not None:
        reason = address_refusal(literal, allow_loopback=allow_loopback)
        return None if reason is None else f"refused address {literal}: {reason}"
    if ":" in host:
        return f"malformed IPv6 host {host!r}"
    if not _HOSTNAME_CHARS.fullmatch(host):
        return f"invalid characters in host {host!r}"
    if _ends_in_number(host):
        return f"malformed numeric host {host!r}"
    return None


def _check_url(url: httpx.URL, policy: FetchPolicy) -> None:
    """Raise UrlRefusedError unless ``url`` may be requested under ``policy``."""
    if url.scheme not in _SCHEMES:
        raise UrlRefusedError(f"scheme {url.scheme!r} is not allowed (http and https only)")
    if url.userinfo:
        raise UrlRefusedError("credentials in the URL are not allowed")
    host = _normalise_host(url.raw_host.decode("ascii", "replace"))
    if not host:
        raise UrlRefusedError("the URL has no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise UrlRefusedError(f"port {url.port} is out of range")
    if policy.allowed_hosts and not host_allowed(host, policy.allowed_hosts):
        raise UrlRefusedError(f"host {host!r} is not in the allowlist")
    reason = _literal_refusal(host, allow_loopback=policy.allow_loopback)
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


# --------------------------------------------------------------------------- deadline


@dataclass(frozen=True)
class _Deadline:
    at: float
    total: float

    def passed(self) -> bool:
        return time.monotonic() >= self.at


# Set by fetch() for the duration of one fetch; everything below runs in the caller's thread.
_DEADLINE: ContextVar[_Deadline | None] = ContextVar("mediaguard_fetch_deadline", default=None)


def _deadline_error(deadline: _Deadline) -> FetchTimeoutError:
    return FetchTimeoutError(f"the fetch exceeded its total deadline of {deadline.total:g}s")


def _bounded(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the current fetch's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline.at - time.monotonic()
    if left <= 0:
        raise _deadline_error(deadline)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation is also bounded by the fetch deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


# --------------------------------------------------------------------------- errors


def _timeout_error(exc: Exception) -> FetchTimeoutError:
    deadline = _DEADLINE.get()
    if deadline is not None and deadline.passed():
        return _deadline_error(deadline)
    if isinstance(exc, httpcore.ConnectTimeout | httpx.ConnectTimeout):
        return FetchTimeoutError("timed out connecting to the upstream server")
    return FetchTimeoutError("timed out waiting for the upstream server")


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn httpx, httpcore and socket exceptions into mediaguard's fetch errors."""
    try:
        yield
    except MediaguardError:
        raise
    except (httpcore.TimeoutException, httpx.TimeoutException, TimeoutError) as exc:
        raise _timeout_error(exc) from exc
    except (httpcore.ConnectError, httpx.ConnectError) as exc:
        raise FetchFailedError(f"could not connect to the upstream server: {exc}") from exc
    except (
        httpcore.ProtocolError,
        httpcore.NetworkError,
        httpcore.UnsupportedProtocol,
        httpx.HTTPError,
        httpx.StreamError,
        httpx.InvalidURL,
        OSError,
    ) as exc:
        raise FetchFailedError(f"fetch failed: {exc}") from exc


# --------------------------------------------------------------------------- transport


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves once, refuses disallowed addresses, connects to the checked IP."""

    def __init__(self, policy: FetchPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._checked_addresses(host, port)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(
                    address, port, _bounded(timeout), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        raise failure or httpcore.ConnectError(f"no address to connect to for {host!r}")

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        name = _normalise_host(host)
        reason = _literal_refusal(name, allow_loopback=self._policy.allow_loopback)
        if reason is not None:
            raise UrlRefusedError(reason)
        literal = parse_ip_literal(name)
        candidates = [literal] if literal is not None else self._resolve(name, port)
        for candidate in candidates:
            reason = address_refusal(candidate, allow_loopback=self._policy.allow_loopback)
            if reason is not None:
                raise UrlRefusedError(f"host {name!r} resolves to {candidate}: {reason}")
        return [str(candidate) for candidate in candidates]

    def _resolve(self, name: str, port: int) -> list[IPAddress]:
        try:
            answers = self._resolver(name, port)
        except (OSError, UnicodeError) as exc:
            raise FetchFailedError(f"could not resolve host {name!r}: {exc}") from exc
        if not answers:
            raise FetchFailedError(f"host {name!r} resolved to no addresses")
        try:
            return [ipaddress.ip_address(answer) for answer in answers]
        except ValueError as exc:
            raise FetchFailedError(f"resolver returned a non-address for {name!r}") from exc


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _translated_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _translated_errors():
                close()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every fetcher: loading the CA bundle takes tens of ms."""
    return httpx.create_ssl_context()


class _GuardedTransport(httpx.BaseTransport):
    """httpx.HTTPTransport's request/response conversion over the guarded backend."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            network_backend=backend,
            http1=True,
            http2=False,
            retries=0,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("the guarded transport only handles synchronous requests")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated_errors():
            core_response = self._pool.handle_request(core_request)
        if not isinstance(core_response.stream, Iterable):
            raise TypeError("httpcore returned an asynchronous stream")
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _NoCookies(http.cookiejar.CookieJar):
    """Fetches for unrelated callers share one client: never carry cookies between them."""

    def __init__(self) -> None:
        super().__init__(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


# --------------------------------------------------------------------------- fetcher


class GuardedFetcher:
    """Fetches URLs under a :class:`FetchPolicy`. Thread-safe; one connection pool."""

    def __init__(self, policy: FetchPolicy, *, resolver: Resolver | None = None) -> None:
        self._policy = policy
        backend = _GuardedBackend(policy, resolver or default_resolver)
        self._client = httpx.Client(
            transport=_GuardedTransport(backend),
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
        token = _DEADLINE.set(_Deadline(at=time.monotonic() + total, total=total))
        try:
            with _translated_errors():
                return self._follow(url, current)
        finally:
            _DEADLINE.reset(token)

    def _follow(self, requested: str, current: httpx.URL) -> FetchedMedia:
        redirects = 0
        while True:
            response = self._client.send(self._client.build_request("GET", current), stream=True)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    if redirects >= self._policy.max_redirects:
                        raise FetchFailedError(
                            f"too many redirects (more than {self._policy.max_redirects})"
                        )
                    current = self._redirect_target(current, response)
                    redirects += 1
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchFailedError(f"upstream returned HTTP {response.status_code}")
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
            raise FetchFailedError(f"malformed redirect (HTTP {status}): bad Location header")
        try:
            target = current.join(location)
        except httpx.InvalidURL as exc:
            raise FetchFailedError(f"malformed redirect (HTTP {status}): {exc}") from exc
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
            raise FetchFailedError(f"unsupported Content-Encoding {encoding!r}")
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


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value.split(",")[0].strip())
    except ValueError:
        return None
