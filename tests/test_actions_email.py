"""Match e-mails, sent for real to an aiosmtpd server on loopback."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from mediaguard.actions import ActionError
from mediaguard.actions.email import (
    MatchNotice,
    SmtpConfig,
    build_match_email,
    send_email,
    takedown_sentence,
)

from fixtures.images import jpeg_of
from fixtures.servers import unused_tcp_port
from fixtures.smtp import SmtpTestServer

IMAGE = jpeg_of()
REVIEWERS = ["alice@reviewers.test", "bob@reviewers.test"]


def notice(**changes: Any) -> MatchNotice:
    base = MatchNotice(
        item_id="upload-8f3a",
        media_url="https://cdn.platform.test/u/8f3a.jpg",
        sha256=hashlib.sha256(IMAGE).hexdigest(),
        bank="CSAM-HASHLIST",
        category="child_protection",
        signal_type="pdq",
        distance=12,
        bank_content_id=4711,
        takedown="taken_down",
        metadata={"source": "ncmec", "note": "added 2024-05"},
    )
    return replace(base, **changes)


def config_for(server: SmtpTestServer, **changes: Any) -> SmtpConfig:
    return SmtpConfig(host=server.host, port=server.port, timeout=5.0, **changes)


def body_lines(server: SmtpTestServer) -> list[str]:
    (received,) = server.messages
    return str(received.message.get_content()).splitlines()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections complete (in the listen backlog) but never get a byte back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_match_email_is_delivered_to_every_reviewer(smtp_server: SmtpTestServer) -> None:
    config = config_for(smtp_server, sender="Mediaguard <alerts@mediaguard.test>")
    send_email(config, build_match_email(config, REVIEWERS, notice()))

    (received,) = smtp_server.messages
    assert received.mail_from == "alerts@mediaguard.test"
    assert received.recipients == REVIEWERS
    message = received.message
    # Python folds a long subject onto its own line; the space left by unfolding is not content.
    assert message["Subject"].strip() == (
        "[mediaguard] child_protection match in bank CSAM-HASHLIST: upload-8f3a"
    )
    assert message["From"] == "Mediaguard <alerts@mediaguard.test>"
    assert message["To"] == ", ".join(REVIEWERS)
    assert message["Message-ID"].endswith("@mediaguard.test>")
    assert message["Date"].datetime.tzinfo is not None
    assert message["Auto-Submitted"] == "auto-generated"
    lines = body_lines(smtp_server)
    for expected in [
        "Media link:      https://cdn.platform.test/u/8f3a.jpg",
        "Item id:         upload-8f3a",
        "Bank:            CSAM-HASHLIST",
        "Category:        child_protection",
        "Signal type:     pdq",
        "Distance:        12",
        "Bank content id: 4711",
        f"SHA-256:         {hashlib.sha256(IMAGE).hexdigest()}",
        "  note: added 2024-05",
        "  source: ncmec",
        takedown_sentence("taken_down"),
    ]:
        assert expected in lines


@pytest.mark.parametrize(
    ("takedown", "phrases"),
    [
        ("taken_down", ["TAKEN DOWN", "called automatically"]),
        ("would_take_down", ["NOT TAKEN DOWN", "WOULD have been taken down", "switched off"]),
        ("needs_review", ["NEEDS REVIEW", "never taken down automatically"]),
        ("failed", ["TAKEDOWN FAILED", "did not succeed", "may still be online"]),
        ("none", ["NO TAKEDOWN", "notice only"]),
    ],
)
def test_body_says_what_happened_to_the_file(
    smtp_server: SmtpTestServer, takedown: str, phrases: list[str]
) -> None:
    config = config_for(smtp_server)
    send_email(config, build_match_email(config, REVIEWERS, notice(takedown=takedown)))

    sentence = next(line for line in body_lines(smtp_server) if line.startswith(phrases[0]))
    for phrase in phrases:
        assert phrase in sentence
    if takedown != "taken_down":
        assert not any(line.startswith("TAKEN DOWN") for line in body_lines(smtp_server))


def test_unknown_takedown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="takedown"):
        notice(takedown="deleted")


def test_missing_link_and_metadata_are_said_plainly(smtp_server: SmtpTestServer) -> None:
    config = config_for(smtp_server)
    send_email(config, build_match_email(config, REVIEWERS, notice(media_url=None, metadata={})))

    lines = body_lines(smtp_server)
    assert "Media link:      (no link)" in lines
    assert lines[lines.index("Bank content metadata:") + 1] == "  (none)"


def test_the_image_is_never_attached(smtp_server: SmtpTestServer) -> None:
    config = config_for(smtp_server)
    send_email(config, build_match_email(config, REVIEWERS, notice(metadata={"note": "é ✓"})))

    (received,) = smtp_server.messages
    assert not received.message.is_multipart()
    assert received.message.get_content_type() == "text/plain"
    assert received.message.get_content_charset() == "utf-8"
    assert list(received.message.iter_attachments()) == []
    assert "  note: é ✓" in body_lines(smtp_server)
    assert received.raw.isascii()
    for fragment in (IMAGE[:64], IMAGE[-64:], base64.b64encode(IMAGE[:48])):
        assert fragment not in received.raw
    assert b"\xff\xd8\xff" not in received.raw  # JPEG magic


def test_header_injection_is_neutralised(smtp_server: SmtpTestServer) -> None:
    evil = notice(
        bank="BANK\r\nBcc: victim@evil.test",
        item_id="id\nX-Injected: yes",
        category="other\u2028Cc: also@evil.test",
        media_url="https://cdn.platform.test/a\r\n\r\n<html>",
        metadata={"note": "fine\nTakedown: TAKEN DOWN"},
    )
    config = config_for(smtp_server)
    send_email(config, build_match_email(config, REVIEWERS, evil))

    (received,) = smtp_server.messages
    assert received.recipients == REVIEWERS
    message = received.message
    assert message["Bcc"] is None
    assert message["Cc"] is None
    assert message["X-Injected"] is None
    assert message["Subject"].strip() == (
        "[mediaguard] other Cc: also@evil.test match in bank BANK Bcc: victim@evil.test: "
        "id X-Injected: yes"
    )
    headers = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.startswith((b"Bcc", b"Cc", b"X-Injected")) for line in headers.splitlines())
    lines = body_lines(smtp_server)
    assert "Media link:      https://cdn.platform.test/a <html>" in lines
    assert "  note: fine Takedown: TAKEN DOWN" in lines
    assert not any(line.startswith("Takedown:") for line in lines)


def test_refused_recipient_is_a_permanent_failure(smtp_server: SmtpTestServer) -> None:
    smtp_server.refuse("gone@reviewers.test")
    config = config_for(smtp_server)
    message = build_match_email(config, ["gone@reviewers.test"], notice())

    with pytest.raises(ActionError) as caught:
        send_email(config, message)
    assert caught.value.transient is False
    assert "550" in str(caught.value)
    assert "gone@reviewers.test" in str(caught.value)
    assert smtp_server.messages == []


def test_temporarily_refused_recipient_is_transient(smtp_server: SmtpTestServer) -> None:
    smtp_server.refuse("busy@reviewers.test", "450 4.2.1 Mailbox busy, try later")
    config = config_for(smtp_server)

    with pytest.raises(ActionError) as caught:
        send_email(config, build_match_email(config, ["busy@reviewers.test"], notice()))
    assert caught.value.transient is True
    assert "450" in str(caught.value)


def test_partly_refused_recipients_fail_without_retry(smtp_server: SmtpTestServer) -> None:
    smtp_server.refuse("busy@reviewers.test", "450 4.2.1 Mailbox busy")
    config = config_for(smtp_server)
    message = build_match_email(config, [*REVIEWERS, "busy@reviewers.test"], notice())

    with pytest.raises(ActionError) as caught:
        send_email(config, message)
    # The others already have it: retrying would send them a duplicate.
    assert caught.value.transient is False
    assert "1 of 3" in str(caught.value)
    (received,) = smtp_server.messages
    assert received.recipients == REVIEWERS


def test_no_recipients_is_permanent_and_sends_nothing() -> None:
    config = SmtpConfig(host="127.0.0.1", port=unused_tcp_port(), timeout=1.0)

    with pytest.raises(ActionError, match="no recipients") as caught:
        send_email(config, build_match_email(config, [], notice()))
    assert caught.value.transient is False


def test_nothing_listening_is_transient() -> None:
    config = SmtpConfig(host="127.0.0.1", port=unused_tcp_port(), timeout=2.0)

    with pytest.raises(ActionError, match="unreachable") as caught:
        send_email(config, build_match_email(config, REVIEWERS, notice()))
    assert caught.value.transient is True


def test_silent_server_times_out_as_transient(silent_port: int) -> None:
    config = SmtpConfig(host="127.0.0.1", port=silent_port, timeout=0.3)

    with pytest.raises(ActionError) as caught:
        send_email(config, build_match_email(config, REVIEWERS, notice()))
    assert caught.value.transient is True


def test_login_with_the_right_credentials(smtp_server: SmtpTestServer) -> None:
    smtp_server.require_auth("mediaguard", "s3cret")
    config = config_for(smtp_server, username="mediaguard", password="s3cret")

    send_email(config, build_match_email(config, REVIEWERS, notice()))
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize(
    ("username", "password", "code"), [("mediaguard", "wrong", "535"), (None, None, "530")]
)
def test_rejected_or_missing_login_is_permanent(
    smtp_server: SmtpTestServer, username: str | None, password: str | None, code: str
) -> None:
    smtp_server.require_auth("mediaguard", "s3cret")
    config = config_for(smtp_server, username=username, password=password)

    with pytest.raises(ActionError, match=code) as caught:
        send_email(config, build_match_email(config, REVIEWERS, notice()))
    assert caught.value.transient is False
    assert smtp_server.messages == []


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_login(
    make_smtp_server: Callable[..., SmtpTestServer],
    smtp_client_tls_context: ssl.SSLContext,
    security: str,
) -> None:
    server = make_smtp_server(security)
    server.require_auth("mediaguard", "s3cret")
    config = config_for(server, security=security, username="mediaguard", password="s3cret")

    send_email(
        config, build_match_email(config, REVIEWERS, notice()), ssl_context=smtp_client_tls_context
    )
    (received,) = server.messages
    assert received.recipients == REVIEWERS


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_untrusted_certificate_is_permanent(
    make_smtp_server: Callable[..., SmtpTestServer], security: str
) -> None:
    server = make_smtp_server(security)
    config = config_for(server, security=security)

    with pytest.raises(ActionError, match="certificate") as caught:
        send_email(config, build_match_email(config, REVIEWERS, notice()))  # system CAs only
    assert caught.value.transient is False
    assert server.messages == []


def test_starttls_not_offered_is_permanent(smtp_server: SmtpTestServer) -> None:
    config = config_for(smtp_server, security="starttls")

    with pytest.raises(ActionError, match="STARTTLS") as caught:
        send_email(config, build_match_email(config, REVIEWERS, notice()))
    assert caught.value.transient is False
    assert smtp_server.messages == []
