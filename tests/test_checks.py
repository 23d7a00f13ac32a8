"""Checks and actions end to end: a real SMTP server and a real webhook receiver on loopback,
SQLite and PostgreSQL, real photos and their transformed copies."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from mediaguard.actions.webhook import verify_signature
from mediaguard.service import Service

from fixtures.actions import acting_service
from fixtures.actions import bank_photo as banked_photo
from fixtures.images import photo, transformed_copies
from fixtures.servers import LocalHttpServer
from fixtures.smtp import SmtpTestServer

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
SECRET = "webhook-shared-secret"
RECIPIENTS = "trust@wiki.example,safety@wiki.example"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_checker(
    backend: str,
    make_service: Callable[..., Service],
    smtp_server: SmtpTestServer,
    http_server: LocalHttpServer,
) -> Callable[..., Service]:
    def make(**overrides: object) -> Service:
        settings: dict[str, object] = {"webhook_attempts": 3, **overrides}
        return acting_service(
            make_service,
            backend,
            smtp_server,
            http_server,
            secret=SECRET,
            recipients=RECIPIENTS,
            **settings,
        )

    return make


def bank_photo(service: Service, bank: str, category: str, name: str = "chelsea.png") -> None:
    banked_photo(service, bank, category, name, metadata={"list": "shared", "case": "4711"})


def copy_of(name: str = "chelsea.png", transform: str = "jpeg-q50") -> bytes:
    copies = transformed_copies(photo(name))
    return copies[transform]


def takedown_requests(server: LocalHttpServer) -> list[dict[str, object]]:
    found = []
    for request in server.requests:
        if request.path == "/takedown" and request.method == "POST":
            assert verify_signature(SECRET, request.headers, request.body)
            found.append(json.loads(request.body))
    return found


def test_a_match_with_the_switch_off_is_emailed_as_would_take_down(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer, http_server: LocalHttpServer
) -> None:
    service = make_checker()
    bank_photo(service, "CSAM_LIST", "child_protection")
    result = service.check_bytes(
        copy_of(), platform_id="File:Cat.jpg", media_url="https://wiki.example/File:Cat.jpg"
    )
    assert result.item.match_status == "match"
    assert [m.bank_name for m in result.new_matches] == ["CSAM_LIST"]
    assert {(a.action, a.status) for a in result.actions} == {
        ("takedown", "would_take_down"),
        ("notify", "done"),
    }
    assert takedown_requests(http_server) == []
    [mail] = smtp_server.messages
    assert sorted(mail.recipients) == sorted(RECIPIENTS.split(","))
    body = mail.message.get_content()
    assert "https://wiki.example/File:Cat.jpg" in body
    assert "CSAM_LIST" in body and "child_protection" in body
    assert "WOULD have been taken down" in body
    assert "case: 4711" in body or "4711" in body
    assert "File:Cat.jpg" in str(mail.message["Subject"])
    events = service.store.audit.list(subject_type="item", subject_id=str(result.item.id))
    assert {(e.event, e.result) for e in events} == {
        ("action.takedown", "would_take_down"),
        ("action.notify", "done"),
    }
    assert all("CSAM_LIST" in (e.reason or "") for e in events)


def test_a_rescan_sends_nothing_new(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer
) -> None:
    service = make_checker()
    bank_photo(service, "NCII_LIST", "ncii")
    first = service.check_bytes(copy_of(), platform_id="File:A.jpg")
    assert len(first.actions) == 2
    again = service.check_bytes(copy_of(), platform_id="File:A.jpg")
    other_copy = service.check_bytes(copy_of(transform="half-jpeg"), platform_id="File:A.jpg")
    assert again.actions == [] and again.new_matches == []
    assert again.item.id == first.item.id and again.item.match_status == "match"
    assert other_copy.item.id != first.item.id  # other bytes: another item, its own e-mail
    assert len(smtp_server.messages) == 2
    assert len(service.store.items.actions(item_id=first.item.id)) == 2


def test_automatic_takedown_calls_the_signed_webhook(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer, http_server: LocalHttpServer
) -> None:
    http_server.add("/takedown", b"ok", content_type="text/plain")
    service = make_checker(auto_takedown=True)
    bank_photo(service, "CSAM_LIST", "child_protection")
    result = service.check_bytes(copy_of(), platform_id="File:B.jpg", media_url="https://w/B")
    [payload] = takedown_requests(http_server)
    assert payload["event"] == "takedown"
    assert payload["item"] == {  # type: ignore[comparison-overlap]
        "id": result.item.id,
        "platform_id": "File:B.jpg",
        "media_url": "https://w/B",
        "sha256": result.item.sha256,
        "sha1": result.item.sha1,
    }
    assert payload["match"]["bank"] == "CSAM_LIST"  # type: ignore[index]
    takedown = next(a for a in result.actions if a.action == "takedown")
    assert takedown.status == "done" and takedown.attempts == 1
    assert "TAKEN DOWN" in smtp_server.messages[0].message.get_content()


def test_terrorism_is_never_taken_down_automatically(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer, http_server: LocalHttpServer
) -> None:
    http_server.add("/takedown", b"ok", content_type="text/plain")
    service = make_checker(auto_takedown=True)
    bank_photo(service, "TVEC_LIST", "terrorism")
    result = service.check_bytes(copy_of(), platform_id="File:T.jpg")
    assert takedown_requests(http_server) == []
    assert {(a.action, a.status) for a in result.actions} == {
        ("takedown", "needs_review"),
        ("notify", "done"),
        ("review", "queued"),
    }
    assert "NEEDS REVIEW" in smtp_server.messages[0].message.get_content()


def test_other_category_only_queues_for_review(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer
) -> None:
    service = make_checker(auto_takedown=True)
    bank_photo(service, "SPAM_LIST", "other")
    result = service.check_bytes(copy_of(), platform_id="File:S.jpg")
    assert [(a.action, a.status) for a in result.actions] == [("review", "queued")]
    assert smtp_server.messages == []


def test_a_bank_policy_overrides_the_category_default(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer, http_server: LocalHttpServer
) -> None:
    http_server.add("/takedown", b"ok", content_type="text/plain")
    service = make_checker(auto_takedown=True)
    bank_photo(service, "NOTIFY_ONLY", "child_protection")
    service.banks.update("NOTIFY_ONLY", {"actions": ["notify"]})
    result = service.check_bytes(copy_of(), platform_id="File:N.jpg")
    assert [(a.action, a.status) for a in result.actions] == [("notify", "done")]
    assert takedown_requests(http_server) == []
    assert "NO TAKEDOWN" in smtp_server.messages[0].message.get_content()


def test_a_known_match_digest_acts_at_once(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer
) -> None:
    service = make_checker()
    bank_photo(service, "CSAM_LIST", "child_protection")
    content = copy_of()
    first = service.check_bytes(content, platform_id="File:First.jpg")
    assert first.item.match_status == "match" and first.item.sha256
    # The same file uploaded again under another name: only its digest is known yet.
    again = service.check_digest(
        sha256=first.item.sha256, platform_id="File:Again.jpg", media_url="https://w/Again"
    )
    assert again.item.id != first.item.id and again.item.match_status == "match"
    assert {a.action for a in again.actions} == {"takedown", "notify"}
    assert len(smtp_server.messages) == 2
    assert "https://w/Again" in smtp_server.messages[1].message.get_content()
    unknown = service.check_digest(sha256="0" * 64, platform_id="File:Clean.jpg")
    assert unknown.item.match_status == "no_match" and unknown.actions == []


def test_a_failing_webhook_is_retried_then_recorded_and_can_be_rerun(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer, http_server: LocalHttpServer
) -> None:
    http_server.add_sequence("/takedown", [(503, b"busy")])
    service = make_checker(auto_takedown=True)
    bank_photo(service, "CSAM_LIST", "child_protection")
    result = service.check_bytes(copy_of(), platform_id="File:F.jpg")
    takedown = next(a for a in result.actions if a.action == "takedown")
    assert takedown.status == "failed" and "503" in (takedown.detail or "")
    assert len([r for r in http_server.requests if r.path == "/takedown"]) == 3
    assert "FAILED" in smtp_server.messages[0].message.get_content().upper()
    http_server.add_sequence("/takedown", [(200, b"ok")])
    rerun = service.retry_action(takedown.id, actor="admin-alice")
    assert rerun.status == "done"
    events = service.store.audit.list(subject_type="item", subject_id=str(result.item.id))
    assert [e.result for e in events if e.event == "action.takedown"] == ["done", "failed"]
    assert events[0].actor == "admin-alice"


def test_no_match_sends_nothing(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer
) -> None:
    service = make_checker()
    bank_photo(service, "CSAM_LIST", "child_protection")
    result = service.check_bytes(copy_of("coffee.png"), platform_id="File:Coffee.jpg")
    assert result.item.match_status == "no_match" and result.matches == []
    assert smtp_server.messages == []


def test_concurrent_checks_of_one_item_act_once(
    make_checker: Callable[..., Service], smtp_server: SmtpTestServer
) -> None:
    service = make_checker()
    bank_photo(service, "CSAM_LIST", "child_protection")
    content = copy_of()
    errors: list[BaseException] = []

    def check() -> None:
        try:
            service.check_bytes(content, platform_id="File:Race.jpg")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(smtp_server.messages) == 1
