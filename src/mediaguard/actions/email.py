"""Match notices for trust-and-safety reviewers, sent as plain-text e-mail over SMTP.

The message never carries the image: reviewers follow the link. Bank names, item ids, URLs and
metadata come from outside, so every value is collapsed to a single line before it goes into a
header or a body line.
"""

from __future__ import annotations

import smtplib
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import Literal, get_args

from mediaguard.actions import ActionError

__all__ = [
    "ActionError",
    "MatchNotice",
    "Security",
    "SmtpConfig",
    "Takedown",
    "build_match_email",
    "send_email",
    "takedown_sentence",
]

Security = Literal["none", "starttls", "ssl"]
Takedown = Literal["taken_down", "would_take_down", "needs_review", "failed", "none"]

_TAKEDOWN_SENTENCES: dict[str, str] = {
    "taken_down": (
        "TAKEN DOWN: the platform's takedown webhook was called automatically for this file."
    ),
    "would_take_down": (
        "NOT TAKEN DOWN: this file WOULD have been taken down, but automatic takedown is "
        "switched off, so it was NOT taken down. A reviewer must act."
    ),
    "needs_review": (
        "NEEDS REVIEW: files in this category are never taken down automatically. "
        "A reviewer must decide whether to take this file down."
    ),
    "failed": (
        "TAKEDOWN FAILED: the takedown webhook was called but did not succeed, so the file may "
        "still be online. A reviewer must act."
    ),
    "none": "NO TAKEDOWN: this bank's policy does not take files down; this is a notice only.",
}

# Control, format (e.g. bidi overrides) and line/paragraph separator characters.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: Security = "none"
    timeout: float = 10.0
    sender: str = "mediaguard@localhost"

    def __post_init__(self) -> None:
        if self.security not in get_args(Security):
            raise ValueError(f"unknown SMTP security {self.security!r}")


@dataclass(frozen=True)
class MatchNotice:
    """What one e-mail says about one item matching one bank."""

    item_id: str  # the platform's id for the file, or its SHA-256
    media_url: str | None
    sha256: str
    bank: str
    category: str  # child_protection, terrorism, ncii, other
    signal_type: str  # pdq, md5, sha1, sha256
    distance: int
    bank_content_id: int
    takedown: Takedown
    metadata: Mapping[str, str] = field(default_factory=dict)  # the bank content's metadata

    def __post_init__(self) -> None:
        if self.takedown not in _TAKEDOWN_SENTENCES:
            raise ValueError(f"unknown takedown state {self.takedown!r}")


def takedown_sentence(takedown: Takedown) -> str:
    """The sentence that tells reviewers what happened to the file."""
    return _TAKEDOWN_SENTENCES[takedown]


def _one_line(value: object) -> str:
    """``value`` as one line: control and separator characters become spaces, runs collapse."""
    text = "".join(
        " " if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in str(value)
    )
    return " ".join(text.split())


def build_match_email(
    config: SmtpConfig, recipients: Sequence[str], notice: MatchNotice
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = _one_line(config.sender)
    if recipients:
        message["To"] = ", ".join(_one_line(recipient) for recipient in recipients)
    message["Subject"] = _one_line(
        f"[mediaguard] {notice.category} match in bank {notice.bank}: {notice.item_id}"
    )
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid("mediaguard", domain=_sender_domain(config.sender))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    # Quoted-printable keeps the body 7-bit and readable whatever the URL length or script.
    message.set_content(_body(notice), charset="utf-8", cte="quoted-printable")
    return message


def _sender_domain(sender: str) -> str:
    domain = _one_line(parseaddr(sender)[1].rpartition("@")[2])
    return "".join(char for char in domain if char.isalnum() or char in ".-") or "localhost"


def _body(notice: MatchNotice) -> str:
    fields = [
        ("Media link", notice.media_url or "(no link)"),
        ("Item id", notice.item_id),
        ("Bank", notice.bank),
        ("Category", notice.category),
        ("Signal type", notice.signal_type),
        ("Distance", notice.distance),
        ("Bank content id", notice.bank_content_id),
        ("SHA-256", notice.sha256),
    ]
    lines = [
        f"An uploaded file matched bank {_one_line(notice.bank)}.",
        "",
        takedown_sentence(notice.takedown),
        "",
        *(f"{name + ':':<17}{_one_line(value)}" for name, value in fields),
        "",
        "Bank content metadata:",
    ]
    if notice.metadata:
        lines += [
            f"  {_one_line(key)}: {_one_line(value)}"
            for key, value in sorted(notice.metadata.items())
        ]
    else:
        lines.append("  (none)")
    lines += ["", "The file is not attached to this e-mail; follow the link to review it."]
    return "\n".join(lines) + "\n"


def send_email(
    config: SmtpConfig, message: EmailMessage, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Send ``message`` to its To/Cc/Bcc recipients, or raise :class:`ActionError`.

    ``ssl_context`` is for "ssl" and "starttls"; the default verifies against the system CAs.
    """
    recipients = [address for _, address in getaddresses(_recipient_headers(message)) if address]
    if not recipients:
        raise ActionError("e-mail has no recipients", transient=False)
    server = f"SMTP server {config.host}:{config.port}"
    try:
        refused = _transmit(config, message, recipients, ssl_context)
    except smtplib.SMTPRecipientsRefused as error:
        raise _refused_error(server, error.recipients, len(recipients)) from error
    except smtplib.SMTPResponseException as error:
        reply = f"{error.smtp_code} {_text(error.smtp_error)}"
        raise ActionError(
            f"{server} answered {reply}", transient=_is_4xx(error.smtp_code)
        ) from error
    except smtplib.SMTPServerDisconnected as error:
        raise ActionError(f"{server} disconnected: {error}", transient=True) from error
    except smtplib.SMTPException as error:  # STARTTLS or AUTH not offered: configuration
        raise ActionError(f"{server}: {error}", transient=False) from error
    except ssl.SSLCertVerificationError as error:  # a bad certificate will not fix itself
        raise ActionError(f"{server}: {error}", transient=False) from error
    except OSError as error:  # refused, reset, unreachable, DNS, timeout, TLS handshake
        detail = str(error) or type(error).__name__
        raise ActionError(f"{server} unreachable: {detail}", transient=True) from error
    if refused:
        # The others got it: a retry would send them duplicates, so this is not transient.
        raise _refused_error(server, refused, len(recipients), transient=False)


def _recipient_headers(message: EmailMessage) -> list[str]:
    return [str(value) for name in ("To", "Cc", "Bcc") for value in message.get_all(name, [])]


def _transmit(
    config: SmtpConfig,
    message: EmailMessage,
    recipients: list[str],
    ssl_context: ssl.SSLContext | None,
) -> dict[str, tuple[int, bytes]]:
    """One SMTP session; returns the recipients refused while others were accepted."""
    context = ssl_context or ssl.create_default_context()
    smtp: smtplib.SMTP
    if config.security == "ssl":
        smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    try:
        if config.security == "starttls":
            smtp.starttls(context=context)
        if config.username is not None:
            smtp.login(config.username, config.password or "")
        sender = parseaddr(config.sender)[1] or config.sender
        refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except BaseException:
        smtp.close()
        raise
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the message was accepted; a failed goodbye changes nothing
    finally:
        smtp.close()
    return refused


def _refused_error(
    server: str,
    refused: Mapping[str, tuple[int, bytes]],
    total: int,
    *,
    transient: bool | None = None,
) -> ActionError:
    details = ", ".join(
        f"{address} ({code} {_text(reply)})" for address, (code, reply) in refused.items()
    )
    if transient is None:
        transient = all(_is_4xx(code) for code, _ in refused.values())
    return ActionError(
        f"{server} refused {len(refused)} of {total} recipients: {details}", transient=transient
    )


def _is_4xx(code: int) -> bool:
    return 400 <= code < 500


def _text(reply: bytes | str) -> str:
    return _one_line(reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)
