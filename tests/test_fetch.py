"""The guarded fetcher against real servers on loopback. DNS is faked by injecting a resolver.

Nothing here sends traffic anywhere but 127.0.0.1: every other address in these tests must be
refused by the guard before a connection is attempted, which is what the tests prove.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from PIL import Image

from mediaguard.config import load_settings
from mediaguard.errors import (
    FetchFailedError,
    FetchTimeoutError,
    MediaTooLargeError,
    UrlRefusedError,
)
from mediaguard.media.addresses import (
    Resolver,
    address_refusal,
    default_resolver,
    host_allowed,
    parse_ipv4_literal,
)
from mediaguard.media.fetch import FetchPolicy, GuardedFetcher

from fixtures.servers import LocalHttpServer, unused_tcp_port

LIMIT = 64 * 1024
FetcherFactory = Callable[..., GuardedFetcher]


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg()


class FakeDns:
    """A resolver answering from a table; each name maps to one answer or a sequence of them."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = self.table[host]
        if answers and isinstance(answers[0], list):  # one answer per call: DNS rebinding
            index = min(len(self.calls_for(host)), len(answers)) - 1
            return list(answers[index])
        return [str(answer) for answer in answers]

    def calls_for(self, host: str) -> list[tuple[str, int]]:
        return [call for call in self.calls if call[0] == host]


@pytest.fixture
def make_fetcher() -> Iterator[FetcherFactory]:
    fetchers: list[GuardedFetcher] = []

    def make(*, resolver: Resolver | None = None, **overrides: object) -> GuardedFetcher:
        # Never the system resolver unless a test passes it: no DNS query leaves the machine.
        resolver = resolver or FakeDns({})
        settings: dict[str, object] = {
            "max_bytes": LIMIT,
            "allow_loopback": True,
            "connect_timeout": 1.0,
            "read_timeout": 1.0,
            "total_timeout": 3.0,
            "max_redirects": 3,
            "user_agent": "mediaguard-test/1.0",
        }
        settings.update(overrides)
        fetcher = GuardedFetcher(FetchPolicy(**settings), resolver=resolver)  # type: ignore[arg-type]
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        fetcher.close()


@pytest.fixture
def fetcher(make_fetcher: FetcherFactory) -> GuardedFetcher:
    return make_fetcher()


def _chain(server: LocalHttpServer, target: str, hops: int, code: int = 302) -> str:
    url = target
    for _ in range(hops):
        url = server.redirect_url(url, code)
    return url


# --------------------------------------------------------------------------- success


def test_fetches_an_image(fetcher: GuardedFetcher, http_server: LocalHttpServer) -> None:
    url = http_server.add("/cat.jpg", JPEG)

    media = fetcher.fetch(url)

    assert media.content == JPEG
    assert media.content_type == "image/jpeg"
    assert media.url == media.final_url == url


def test_sends_the_user_agent(fetcher: GuardedFetcher, http_server: LocalHttpServer) -> None:
    fetcher.fetch(http_server.add("/ua.jpg", JPEG))

    (request,) = http_server.requests
    assert request.method == "GET"
    assert request.headers["user-agent"] == "mediaguard-test/1.0"
    assert "cookie" not in request.headers


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_follows_a_redirect_chain(
    fetcher: GuardedFetcher, http_server: LocalHttpServer, code: int
) -> None:
    target = http_server.add("/final.jpg", JPEG)
    start = _chain(http_server, target, hops=3, code=code)

    media = fetcher.fetch(start)

    assert media.content == JPEG
    assert media.url == start
    assert media.final_url == target
    assert len(http_server.requests) == 4


def test_follows_a_relative_redirect(fetcher: GuardedFetcher, http_server: LocalHttpServer) -> None:
    target = http_server.add("/images/final.jpg", JPEG)

    media = fetcher.fetch(http_server.redirect_url("/images/final.jpg"))

    assert media.final_url == target
    assert media.content == JPEG


@pytest.mark.parametrize(("hops", "allowed"), [(3, True), (4, False)])
def test_redirect_limit(
    fetcher: GuardedFetcher, http_server: LocalHttpServer, hops: int, allowed: bool
) -> None:
    start = _chain(http_server, http_server.add("/end.jpg", JPEG), hops=hops)

    if allowed:
        assert fetcher.fetch(start).content == JPEG
    else:
        with pytest.raises(FetchFailedError, match="too many redirects"):
            fetcher.fetch(start)


def test_concurrent_fetches_share_one_fetcher(
    fetcher: GuardedFetcher, http_server: LocalHttpServer
) -> None:
    urls = [http_server.add(f"/img{i}.jpg", JPEG + bytes([i])) for i in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetcher.fetch, urls))

    assert [media.content for media in results] == [JPEG + bytes([i]) for i in range(16)]


def test_policy_from_settings() -> None:
    settings = load_settings(
        max_image_bytes=1234,
        fetch_allowed_hosts="img.test, *.cdn.test",
        fetch_connect_timeout=1.5,
        fetch_read_timeout=2.5,
        fetch_total_timeout=9.0,
        fetch_max_redirects=2,
        fetch_user_agent="ua",
    )

    policy = FetchPolicy.from_settings(settings)

    assert policy == FetchPolicy(
        max_bytes=1234,
        allowed_hosts=("img.test", "*.cdn.test"),
        allow_loopback=False,
        connect_timeout=1.5,
        read_timeout=2.5,
        total_timeout=9.0,
        max_redirects=2,
        user_agent="ua",
    )


# --------------------------------------------------------------------------- refused URLs


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.org/cat.jpg", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:70/_stats", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:image/png;base64,AAAA", "scheme"),
        ("//example.org/cat.jpg", "scheme"),
        ("example.org/cat.jpg", "scheme"),
        ("http://user:secret@127.0.0.1/", "credentials"),
        ("http://user@127.0.0.1/", "credentials"),
        ("http://evil.test\\@127.0.0.1/", "backslash"),
        ("http:///cat.jpg", "no host"),
        ("http://127.0.0.1:99999/", "out of range"),
        ("http://127.0.0.1:0/", "out of range"),
        ("http://exa mple.org/", "whitespace"),
        ("http://example.org/\r\nX-Injected: 1", "control"),
        ("http://%31%32%37.0.0.1/", "invalid characters"),
        ("http://[::1/", "malformed"),
        ("http://1.2.3.4.5/", "numeric host"),
        ("http://08.1/", "numeric host"),
    ],
)
def test_refuses_bad_urls(fetcher: GuardedFetcher, url: str, rule: str) -> None:
    with pytest.raises(UrlRefusedError, match=rule):
        fetcher.fetch(url)


def test_loopback_refused_unless_allowed(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    fetcher = make_fetcher(allow_loopback=False)
    url = http_server.add("/cat.jpg", JPEG)

    for start in (url, http_server.redirect_url(url)):
        with pytest.raises(UrlRefusedError, match="loopback"):
            fetcher.fetch(start)

    assert http_server.requests == []


def test_localhost_refused_by_real_resolution(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    fetcher = make_fetcher(allow_loopback=False, resolver=default_resolver)

    with pytest.raises(UrlRefusedError, match=r"'localhost' resolves to .*loopback"):
        fetcher.fetch(f"http://localhost:{http_server.port}/")

    assert http_server.requests == []


LOOPBACK_SPELLINGS = [
    "2130706433",
    "0x7f000001",
    "0X7F000001",
    "017700000001",
    "0177.0.0.1",
    "0177.0.1",
    "0177.1",
    "0x7f.1",
    "0x7f.0.0.1",
    "127.1",
    "127.0.1",
    "127.000.000.001",
    "127.0.0.1.",
    "127.42.42.42",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_loopback_spelling_is_refused(
    make_fetcher: FetcherFactory,
    http_server: LocalHttpServer,
    host: str,
) -> None:
    # Were the guard fooled, these would reach the test server and succeed.
    fetcher = make_fetcher(allow_loopback=False)
    url = f"http://{host}:{http_server.port}/cat.jpg"
    http_server.add("/cat.jpg", JPEG)

    with pytest.raises(UrlRefusedError, match=r"loopback|malformed"):
        fetcher.fetch(url)

    assert http_server.requests == []


DISALLOWED_TARGETS = [
    ("http://10.0.0.1/", "private"),
    ("http://172.16.5.4:8080/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique local"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://192.0.2.1/", "documentation"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::10.0.0.1]/", "IPv4-compatible"),
    ("http://[64:ff9b::a00:1]/", "NAT64"),
    ("http://[64:ff9b::7f00:1]/", "NAT64"),
    ("http://[2002:a00:1::]/", "6to4"),
    ("http://167772161/", "private"),
    ("http://0xa000001/", "private"),
    ("http://012.0.1/", "private"),
    ("http://10.1/", "private"),
    ("http://0xa9fea9fe/", "metadata"),
]


@pytest.mark.parametrize(("target", "rule"), DISALLOWED_TARGETS)
def test_redirect_to_disallowed_address_is_refused_before_connecting(
    fetcher: GuardedFetcher, http_server: LocalHttpServer, target: str, rule: str
) -> None:
    # Loopback is allowed here, so the first hop succeeds; the second must be refused outright.
    # Had a connection been attempted, these unroutable addresses would time out instead.
    started = time.monotonic()

    with pytest.raises(UrlRefusedError, match=f"redirect to .*({rule})"):
        fetcher.fetch(http_server.redirect_url(target))

    assert time.monotonic() - started < 0.5
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("answers", "rule"),
    [
        (["10.0.0.5"], "private"),
        (["127.0.0.1", "10.0.0.5"], "private"),  # the reachable first answer is not used either
        (["93.184.216.34", "10.0.0.5"], "private"),  # refused before connecting to anything
        (["169.254.169.254"], "metadata"),
        (["::ffff:192.168.0.1"], "private"),
        (["fe80::1%1"], "link-local"),
    ],
)
def test_hostname_resolving_to_a_disallowed_address_is_refused(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer, answers: list[str], rule: str
) -> None:
    dns = FakeDns({"images.test": answers})
    fetcher = make_fetcher(resolver=dns)

    with pytest.raises(UrlRefusedError, match=f"'images.test' resolves to .*{rule}"):
        fetcher.fetch(f"http://images.test:{http_server.port}/cat.jpg")

    assert http_server.requests == []
    assert dns.calls == [("images.test", http_server.port)]


def test_loopback_answer_refused_without_allow_loopback(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    fetcher = make_fetcher(allow_loopback=False, resolver=FakeDns({"img.test": ["::1"]}))

    with pytest.raises(UrlRefusedError, match="loopback"):
        fetcher.fetch(f"http://img.test:{http_server.port}/")


def test_connects_to_the_checked_address_without_resolving_again(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    # rebind.test exists only in the fake DNS: the first fetch can only succeed if the socket is
    # opened to the checked IP rather than handing the name to the OS. The rebound answer is
    # then refused on the next connection.
    dns = FakeDns({"rebind.test": [["127.0.0.1"], ["10.0.0.5"]]})
    fetcher = make_fetcher(resolver=dns)
    http_server.add("/cat.jpg", JPEG)
    url = f"http://rebind.test:{http_server.port}/cat.jpg"

    assert fetcher.fetch(url).content == JPEG
    assert http_server.requests[0].headers["host"] == f"rebind.test:{http_server.port}"
    with pytest.raises(UrlRefusedError, match="private"):
        fetcher.fetch(url)
    assert len(dns.calls) == 2


@pytest.mark.parametrize(
    ("answers", "error"),
    [(None, "could not resolve"), ([], "no addresses"), (["not-an-ip"], "non-address")],
)
def test_resolution_failures(
    make_fetcher: FetcherFactory, answers: list[str] | None, error: str
) -> None:
    dns = FakeDns({} if answers is None else {"img.test": answers})
    fetcher = make_fetcher(resolver=dns)

    with pytest.raises(FetchFailedError, match=error):
        fetcher.fetch("http://img.test/cat.jpg")


# --------------------------------------------------------------------------- allowlist


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        (("images.test",), "images.test", True),
        (("images.test",), "IMAGES.test", True),
        (("images.test",), "other.test", False),
        (("images.test",), "sub.images.test", False),
        (("*.cdn.test",), "a.cdn.test", True),
        (("*.cdn.test",), "b.a.cdn.test", True),
        (("*.cdn.test",), "cdn.test", True),
        (("*.cdn.test",), "evilcdn.test", False),
        (("*.cdn.test",), "cdn.test.evil", False),
        (("images.test", "*.cdn.test"), "x.cdn.test", True),
    ],
)
def test_allowlist(
    make_fetcher: FetcherFactory,
    http_server: LocalHttpServer,
    allowed: tuple[str, ...],
    host: str,
    ok: bool,
) -> None:
    dns = FakeDns({host.lower(): ["127.0.0.1"]})
    fetcher = make_fetcher(allowed_hosts=allowed, resolver=dns)
    http_server.add("/cat.jpg", JPEG)
    url = f"http://{host}:{http_server.port}/cat.jpg"

    if ok:
        assert fetcher.fetch(url).content == JPEG
    else:
        with pytest.raises(UrlRefusedError, match="allowlist"):
            fetcher.fetch(url)
        assert dns.calls == []


def test_allowlist_checked_on_every_hop(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    dns = FakeDns({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    fetcher = make_fetcher(allowed_hosts=("images.test",), resolver=dns)
    target = f"http://other.test:{http_server.port}/cat.jpg"
    start = f"http://images.test:{http_server.port}/redirect?to={quote(target, safe='')}"

    with pytest.raises(UrlRefusedError, match=r"redirect to .*allowlist"):
        fetcher.fetch(start)

    assert [call[0] for call in dns.calls] == ["images.test"]


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        (["Example.org."], "example.org", True),
        (["*.example.org"], "EXAMPLE.ORG.", True),
        (["*.example.org"], "notexample.org", False),
        ([], "example.org", False),
    ],
)
def test_host_allowed(allowed: list[str], host: str, ok: bool) -> None:
    assert host_allowed(host, allowed) is ok


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("location", "error", "rule"),
    [
        (None, FetchFailedError, "malformed redirect"),
        ("http://exa mple.org/", FetchFailedError, "malformed redirect"),
        ("http://0251.0376.0251.0376/", FetchFailedError, "Invalid URL in location"),
        ("ftp://127.0.0.1/cat.jpg", UrlRefusedError, "scheme"),
        ("file:///etc/passwd", UrlRefusedError, "scheme"),
        ("http://user:pw@127.0.0.1/", UrlRefusedError, "credentials"),
    ],
)
def test_bad_redirects(
    fetcher: GuardedFetcher,
    http_server: LocalHttpServer,
    location: str | None,
    error: type[Exception],
    rule: str,
) -> None:
    headers = {} if location is None else {"Location": location}
    url = http_server.add("/moved", b"", "text/plain", status=302, headers=headers)

    with pytest.raises(error, match=rule):
        fetcher.fetch(url)


# --------------------------------------------------------------------------- upstream failures


@pytest.mark.parametrize("status", [400, 403, 404, 410, 500, 502, 503])
def test_upstream_error_status(
    fetcher: GuardedFetcher, http_server: LocalHttpServer, status: int
) -> None:
    with pytest.raises(FetchFailedError, match=f"HTTP {status}"):
        fetcher.fetch(http_server.url(f"/status/{status}"))


def test_connection_refused(fetcher: GuardedFetcher) -> None:
    with pytest.raises(FetchFailedError, match="could not connect"):
        fetcher.fetch(f"http://127.0.0.1:{unused_tcp_port()}/cat.jpg")


def test_truncated_body_is_a_failure(fetcher: GuardedFetcher, http_server: LocalHttpServer) -> None:
    with pytest.raises(FetchFailedError):
        fetcher.fetch(http_server.url("/lying-length?length=1000"))


def test_compressed_body_is_refused(fetcher: GuardedFetcher, http_server: LocalHttpServer) -> None:
    url = http_server.add("/z.jpg", b"\x1f\x8b", headers={"Content-Encoding": "gzip"})

    with pytest.raises(FetchFailedError, match="Content-Encoding"):
        fetcher.fetch(url)


def test_stalled_server_times_out(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    fetcher = make_fetcher(read_timeout=0.5, total_timeout=5.0)
    started = time.monotonic()

    with pytest.raises(FetchTimeoutError, match="timed out"):
        fetcher.fetch(http_server.url("/stall?seconds=10"))

    assert 0.4 < time.monotonic() - started < 1.5


def test_dripping_server_hits_the_total_deadline(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    # Each byte arrives well within the read timeout; only the whole-fetch deadline stops it.
    fetcher = make_fetcher(read_timeout=0.8, total_timeout=1.0)
    started = time.monotonic()

    with pytest.raises(FetchTimeoutError, match="total deadline"):
        fetcher.fetch(http_server.url("/drip?bytes=100&delay=0.3"))

    assert 0.9 < time.monotonic() - started < 1.8


def test_total_deadline_spans_redirects(
    make_fetcher: FetcherFactory, http_server: LocalHttpServer
) -> None:
    fetcher = make_fetcher(read_timeout=0.8, total_timeout=1.0)
    start = http_server.redirect_url(http_server.url("/drip?bytes=100&delay=0.3"))

    with pytest.raises(FetchTimeoutError, match="total deadline"):
        fetcher.fetch(start)


# --------------------------------------------------------------------------- size limit


@pytest.mark.parametrize(
    ("path", "size", "too_large"),
    [
        ("/lying-length", None, True),
        ("/fixed", LIMIT + 1, True),
        ("/fixed", LIMIT, False),
        ("/big?bytes={size}", LIMIT + 1, True),
        ("/big?bytes={size}", 50 * LIMIT, True),
        ("/big?bytes={size}", LIMIT, False),
    ],
)
def test_size_limit(
    fetcher: GuardedFetcher,
    http_server: LocalHttpServer,
    path: str,
    size: int | None,
    too_large: bool,
) -> None:
    if path == "/fixed":
        http_server.add(path, b"\0" * (size or 0))
    url = http_server.url(path.format(size=size))

    if too_large:
        with pytest.raises(MediaTooLargeError, match=str(LIMIT)):
            fetcher.fetch(url)
    else:
        assert len(fetcher.fetch(url).content) == size


# --------------------------------------------------------------------------- classifier


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_allowed(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.255", "CGNAT"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("192.0.0.8", "IETF"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),
        ("64:ff9b::a00:1", "NAT64 address embedding 10.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1"),
        ("64:ff9b:1::a00:1", "NAT64"),
        ("2002:a9fe:a9fe::1", "6to4 address embedding 169.254.169.254"),
        ("2001::1", "Teredo"),
        ("100::1", "discard"),
    ],
)
def test_blocked_addresses_refused(address: str, reason: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("64:ff9b::7f00:1", False),  # reaches loopback through a gateway, not this host
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
    ],
)
def test_allow_loopback_permits_only_loopback(address: str, allowed: bool) -> None:
    assert (address_refusal(address, allow_loopback=True) is None) is allowed


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("10.65535", "10.0.255.255"),
        ("0x", "0.0.0.0"),
        ("0", "0.0.0.0"),
        ("4294967295", "255.255.255.255"),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
        ("1.2.3.256", None),
        ("1.65536", "1.1.0.0"),
        ("1.16777216", None),
        ("4294967296", None),
        ("08.0.0.1", None),
        ("0x1g", None),
        ("+1", None),
        ("1_0", None),
        ("1..2", None),
        ("127.0.0.1.", None),
        ("١٢٧.0.0.1", None),
        ("example.org", None),
        ("", None),
    ],
)
def test_parse_ipv4_literal(host: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.IPv4Address(address)
    assert parse_ipv4_literal(host) == expected
