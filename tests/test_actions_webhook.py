"""The signed takedown webhook against a real HTTP server on loopback; sleeps are only recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from mediaguard.actions import ActionError, webhook
from mediaguard.actions.webhook import (
    WebhookConfig,
    WebhookResult,
    deliver,
    encode_payload,
    sign,
    verify_signature,
)

from fixtures.servers import LocalHttpServer, RecordedRequest, unused_tcp_port

SECRET = "whsec_test-secret"
PAYLOAD = {"action": "takedown", "item_id": "upload-8f3a", "bank": "CSAM", "content_id": 4711}
NOW = 1_700_000_000


class Sleeps(list[float]):
    """An injected ``sleep`` that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections complete (in the listen backlog) but never get a byte back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def config(url: str, **changes: Any) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SECRET, **{"timeout": 5.0, **changes})


def signed_headers(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Mediaguard-Timestamp": str(timestamp),
        "X-Mediaguard-Signature": f"sha256={sign(secret, timestamp, body)}",
    }


def posts(server: LocalHttpServer) -> list[RecordedRequest]:
    return [request for request in server.requests if request.method == "POST"]


# signing and verification


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, body) == expected


def test_verify_accepts_a_fresh_signature_with_any_header_case() -> None:
    body = encode_payload(PAYLOAD)
    headers = signed_headers(body)
    assert verify_signature(SECRET, headers, body, now=NOW + 10)
    lower = {name.lower(): value for name, value in headers.items()}
    assert verify_signature(SECRET, lower, body, now=NOW - 10)
    assert verify_signature(SECRET, httpx.Headers(headers), body, now=NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        "body",
        "secret",
        "stale",
        "future",
        "timestamp",
        "missing-signature",
        "missing-timestamp",
        "garbage-timestamp",
        "bare-hex",
    ],
)
def test_verify_rejects(tamper: str) -> None:
    body = encode_payload(PAYLOAD)
    headers = signed_headers(body)
    secret, now = SECRET, float(NOW)
    if tamper == "body":
        body = body.replace(b"upload-8f3a", b"upload-0000")
    elif tamper == "secret":
        secret = "whsec_other"
    elif tamper == "stale":
        now = NOW + 301
    elif tamper == "future":
        now = NOW - 301
    elif tamper == "timestamp":  # replaying the signature with a fresh timestamp
        headers["X-Mediaguard-Timestamp"] = str(NOW + 200)
    elif tamper == "missing-signature":
        del headers["X-Mediaguard-Signature"]
    elif tamper == "missing-timestamp":
        del headers["X-Mediaguard-Timestamp"]
    elif tamper == "garbage-timestamp":
        headers["X-Mediaguard-Timestamp"] = "1e9"
    elif tamper == "bare-hex":
        headers["X-Mediaguard-Signature"] = sign(SECRET, NOW, body)
    assert not verify_signature(secret, headers, body, now=now)


def test_verify_tolerance_is_configurable() -> None:
    body = b"{}"
    headers = signed_headers(body)
    assert verify_signature(SECRET, headers, body, now=NOW + 299)
    assert not verify_signature(SECRET, headers, body, tolerance=60, now=NOW + 61)


def test_verify_defaults_to_the_current_time() -> None:
    body = b"{}"
    assert verify_signature(SECRET, signed_headers(body, int(time.time())), body)
    assert not verify_signature(SECRET, signed_headers(body, int(time.time()) - 3600), body)


# delivery


def test_delivers_a_signed_json_post(http_server: LocalHttpServer, sleeps: Sleeps) -> None:
    url = http_server.url("/hooks/takedown")

    result = deliver(config(url), PAYLOAD, delivery_id="dlv-1", sleep=sleeps)

    assert result == WebhookResult(status_code=200, attempts=1)
    assert sleeps == []
    (request,) = posts(http_server)
    assert request.path == "/hooks/takedown"
    assert request.body == json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(request.body) == PAYLOAD
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "mediaguard"
    assert request.headers["x-mediaguard-delivery"] == "dlv-1"
    assert request.headers["x-mediaguard-signature"].startswith("sha256=")
    assert abs(int(request.headers["x-mediaguard-timestamp"]) - time.time()) < 5
    assert verify_signature(SECRET, request.headers, request.body)
    assert not verify_signature("whsec_other", request.headers, request.body)
    assert not verify_signature(SECRET, request.headers, request.body + b" ")


def test_any_2xx_is_success(http_server: LocalHttpServer, sleeps: Sleeps) -> None:
    url = http_server.add("/hook", b"", status=202)

    assert deliver(config(url), PAYLOAD, delivery_id="d", sleep=sleeps).status_code == 202


def test_retries_5xx_with_the_same_delivery_id_then_succeeds(
    http_server: LocalHttpServer, sleeps: Sleeps
) -> None:
    url = http_server.add_sequence("/hook", [(503, b"busy"), (502, b"bad gateway"), (200, b"ok")])

    result = deliver(config(url, backoff=0.5), PAYLOAD, delivery_id="dlv-2", sleep=sleeps)

    assert result == WebhookResult(status_code=200, attempts=3)
    requests = posts(http_server)
    assert len(requests) == 3
    assert {request.headers["x-mediaguard-delivery"] for request in requests} == {"dlv-2"}
    assert {request.body for request in requests} == {encode_payload(PAYLOAD)}
    assert all(verify_signature(SECRET, r.headers, r.body) for r in requests)
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


def test_every_attempt_is_signed_with_a_new_timestamp(
    http_server: LocalHttpServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(NOW, NOW + 100, 40))
    monkeypatch.setattr(webhook, "time", SimpleNamespace(time=lambda: next(clock)))
    url = http_server.add_sequence("/hook", [(500, b""), (500, b""), (204, b"")])

    deliver(config(url), PAYLOAD, delivery_id="d", sleep=sleeps)

    requests = posts(http_server)
    timestamps = [int(request.headers["x-mediaguard-timestamp"]) for request in requests]
    assert timestamps == [NOW, NOW + 40, NOW + 80]
    assert len({request.headers["x-mediaguard-signature"] for request in requests}) == 3
    for request, timestamp in zip(requests, timestamps, strict=True):
        assert verify_signature(SECRET, request.headers, request.body, now=timestamp)


def test_backoff_doubles_up_to_the_cap(
    http_server: LocalHttpServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    url = http_server.add("/hook", b"", status=503)
    settings = config(url, attempts=6, backoff=0.5, max_backoff=3.0)

    with pytest.raises(ActionError):
        deliver(settings, PAYLOAD, delivery_id="d", sleep=sleeps)

    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_the_window(http_server: LocalHttpServer, sleeps: Sleeps) -> None:
    url = http_server.add("/hook", b"", status=500)

    with pytest.raises(ActionError):
        deliver(
            config(url, attempts=8, backoff=0.1, max_backoff=1.0),
            PAYLOAD,
            delivery_id="d",
            sleep=sleeps,
        )

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert all(0 <= slept <= cap for slept, cap in zip(sleeps, ceilings, strict=True))
    assert len(set(sleeps)) > 1


@pytest.mark.parametrize(("retry_after", "expected"), [("7", 7.0), ("120", 30.0), ("0", 0.0)])
def test_retry_after_is_respected_and_capped(
    http_server: LocalHttpServer, sleeps: Sleeps, retry_after: str, expected: float
) -> None:
    url = http_server.add_sequence(
        "/hook", [(429, b"slow down", {"Retry-After": retry_after}), (200, b"")]
    )

    result = deliver(config(url, max_backoff=30.0), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert result.attempts == 2
    assert sleeps == [expected]


def test_retry_after_as_a_date_falls_back_to_backoff(
    http_server: LocalHttpServer, sleeps: Sleeps
) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    url = http_server.add_sequence("/hook", [(503, b"", {"Retry-After": date}), (200, b"")])

    deliver(config(url, backoff=0.5), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.5


def test_408_is_retried(http_server: LocalHttpServer, sleeps: Sleeps) -> None:
    url = http_server.add_sequence("/hook", [(408, b""), (200, b"")])

    assert deliver(config(url), PAYLOAD, delivery_id="d", sleep=sleeps).attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_is_permanent_without_retry(
    http_server: LocalHttpServer, sleeps: Sleeps, status: int
) -> None:
    url = http_server.add("/hook", b"no", status=status)

    with pytest.raises(ActionError) as caught:
        deliver(config(url), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is False
    assert f"HTTP {status}" in str(caught.value)
    assert "after 1 attempt:" in str(caught.value)
    assert len(posts(http_server)) == 1
    assert sleeps == []


def test_redirects_are_not_followed(http_server: LocalHttpServer, sleeps: Sleeps) -> None:
    target = http_server.url("/elsewhere")
    url = http_server.add("/hook", b"", status=307, headers={"Location": target})
    # Even a client that follows redirects by default must not follow this one.
    with httpx.Client(follow_redirects=True, trust_env=False) as client:
        with pytest.raises(ActionError, match="HTTP 307") as caught:
            deliver(config(url), PAYLOAD, delivery_id="d", client=client, sleep=sleeps)
        assert not client.is_closed  # a caller's client is left open

    assert caught.value.transient is False
    assert [request.path for request in http_server.requests] == ["/hook"]


def test_5xx_until_the_last_attempt_is_transient(
    http_server: LocalHttpServer, sleeps: Sleeps
) -> None:
    url = http_server.add("/hook", b"down", status=503)

    with pytest.raises(ActionError) as caught:
        deliver(config(url, attempts=3), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is True
    assert "HTTP 503" in str(caught.value)
    assert "after 3 attempts" in str(caught.value)
    assert len(posts(http_server)) == 3
    assert len(sleeps) == 2


def test_a_permanent_failure_after_retries_is_permanent(
    http_server: LocalHttpServer, sleeps: Sleeps
) -> None:
    url = http_server.add_sequence("/hook", [(503, b""), (403, b"")])

    with pytest.raises(ActionError, match="HTTP 403") as caught:
        deliver(config(url), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is False
    assert "after 2 attempts" in str(caught.value)


def test_connection_refused_is_transient_after_every_attempt(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port()}/hook"

    with pytest.raises(ActionError, match="ConnectError") as caught:
        deliver(config(url, attempts=4), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is True
    assert "after 4 attempts" in str(caught.value)
    assert len(sleeps) == 3


def test_a_silent_receiver_times_out_as_transient(silent_port: int, sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{silent_port}/hook"
    started = time.monotonic()

    with pytest.raises(ActionError, match="timed out") as caught:
        deliver(config(url, attempts=2, timeout=0.2), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is True
    assert "after 2 attempts" in str(caught.value)
    assert time.monotonic() - started < 3


def test_a_bad_url_is_permanent(sleeps: Sleeps) -> None:
    with pytest.raises(ActionError) as caught:
        deliver(config("ftp://127.0.0.1/hook"), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert caught.value.transient is False
    assert sleeps == []


def test_proxy_environment_is_ignored(
    http_server: LocalHttpServer, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{unused_tcp_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    result = deliver(config(http_server.url("/hook")), PAYLOAD, delivery_id="d", sleep=sleeps)

    assert result.attempts == 1


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        WebhookConfig(url="http://x", secret="s", attempts=0)
    with pytest.raises(ValueError):
        WebhookConfig(url="http://x", secret="s", backoff=-1)
