"""The httpcore/httpx plumbing under :class:`~mediaguard.media.fetch.GuardedFetcher`.

:class:`GuardedBackend` resolves a name once, refuses disallowed addresses and connects to the
checked IP; :class:`GuardedTransport` runs httpx requests over it. Every network operation is
also bounded by the per-fetch :class:`Deadline` held in :data:`DEADLINE`, and
:func:`translated_errors` turns httpx, httpcore and socket exceptions into mediaguard's errors.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import ssl
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from mediaguard.errors import (
    FetchFailedError,
    FetchTimeoutError,
    MediaguardError,
    UrlRefusedError,
)
from mediaguard.media.addresses import (
    IPAddress,
    Resolver,
    address_refusal,
    literal_refusal,
    normalise_host,
    parse_ip_literal,
)

__all__ = ["DEADLINE", "Deadline", "GuardedBackend", "GuardedTransport", "translated_errors"]


# --------------------------------------------------------------------------- deadline


@dataclass(frozen=True)
class Deadline:
    at: float
    total: float

    def passed(self) -> bool:
        return time.monotonic() >= self.at


# Set by fetch() for the duration of one fetch; everything below runs in the caller's thread.
DEADLINE: ContextVar[Deadline | None] = ContextVar("mediaguard_fetch_deadline", default=None)


def _deadline_error(deadline: Deadline) -> FetchTimeoutError:
    return FetchTimeoutError(f"the fetch exceeded its total deadline of {deadline.total:g}s")


def _bounded(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the current fetch's deadline."""
    deadline = DEADLINE.get()
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
    deadline = DEADLINE.get()
    if deadline is not None and deadline.passed():
        return _deadline_error(deadline)
    if isinstance(exc, httpcore.ConnectTimeout | httpx.ConnectTimeout):
        return FetchTimeoutError("timed out connecting to the upstream server")
    return FetchTimeoutError("timed out waiting for the upstream server")


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
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


class GuardedBackend(httpcore.SyncBackend):
    """Resolves once, refuses disallowed addresses, connects to the checked IP."""

    def __init__(self, resolver: Resolver, *, allow_loopback: bool) -> None:
        self._allow_loopback = allow_loopback
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
        name = normalise_host(host)
        reason = literal_refusal(name, allow_loopback=self._allow_loopback)
        if reason is not None:
            raise UrlRefusedError(reason)
        literal = parse_ip_literal(name)
        candidates = [literal] if literal is not None else self._resolve(name, port)
        for candidate in candidates:
            reason = address_refusal(candidate, allow_loopback=self._allow_loopback)
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
        with translated_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with translated_errors():
                close()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every fetcher: loading the CA bundle takes tens of ms."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.BaseTransport):
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
        with translated_errors():
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
