"""The upload pipeline's core on SQLite and PostgreSQL: intake, processing, retries, leases and
the sweeper, with real photos served over loopback, a real SMTP server and a webhook receiver."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mediaguard.errors import (
    InvalidInputError,
    MediaTooLargeError,
    UnsupportedMediaError,
    UrlRefusedError,
)
from mediaguard.pipeline import MediaSubmission, retry_delay
from mediaguard.service import Service
from mediaguard.store.db import utcnow
from mediaguard.store.items import ItemInfo, MatchRecord, PlannedAction
from mediaguard.store.media import SignalValues
from mediaguard.store.models import MEDIA_CONTENT, MEDIA_ITEMS

from fixtures.actions import acting_service
from fixtures.actions import bank_photo as banked_photo
from fixtures.images import encode, jpeg_of, photo, transformed_copies
from fixtures.servers import LocalHttpServer
from fixtures.smtp import SmtpTestServer

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
SECRET = "pipeline-webhook-secret"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_pipeline(
    backend: str,
    make_service: Callable[..., Service],
    smtp_server: SmtpTestServer,
    http_server: LocalHttpServer,
) -> Callable[..., Service]:
    def make(**overrides: object) -> Service:
        settings: dict[str, object] = {
            "auto_takedown": True,
            "retry_backoff": 0.05,
            "retry_backoff_max": 0.1,
            **overrides,
        }
        return acting_service(
            make_service,
            backend,
            smtp_server,
            http_server,
            secret=SECRET,
            recipients="trust@wiki.example",
            **settings,
        )

    return make


def bank_photo(service: Service, name: str = "chelsea.png") -> None:
    banked_photo(service, "CSAM_LIST", "child_protection", name)


def submit_banked_copy(service: Service, http_server: LocalHttpServer) -> ItemInfo:
    """Banks a photo, then submits the URL of a JPEG copy of it: an item that will match."""
    bank_photo(service)
    url = http_server.add("/cat.jpg", transformed_copies(photo("chelsea.png"))["jpeg-q50"])
    item = service.pipeline.submit(MediaSubmission(url=url)).item
    assert item is not None
    return item


def takedowns(server: LocalHttpServer) -> int:
    return sum(1 for r in server.requests if r.path == "/takedown" and r.method == "POST")


def process_until_settled(service: Service, item_id: int, timeout: float = 10) -> str:
    """Run the worker's step until the item is done or failed, waiting out retry delays."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.pipeline.process(item_id)
        state = service.pipeline.get(item_id).state
        if state in ("done", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"item {item_id} still {state} after {timeout} s")


def test_a_url_upload_is_processed_once_into_one_verdict_with_every_signal(
    make_pipeline: Callable[..., Service],
    http_server: LocalHttpServer,
    smtp_server: SmtpTestServer,
) -> None:
    service = make_pipeline()
    bank_photo(service)
    content = transformed_copies(photo("chelsea.png"))["jpeg-q50"]
    url = http_server.add("/files/cat.jpg", content)

    submitted = service.pipeline.submit(
        MediaSubmission(
            url=url, platform_id="File:Cat.jpg", title="A cat", tags=("cat", "pet"), uploader="Jo"
        )
    )
    assert submitted.outcome == "created"
    item = submitted.item
    assert item is not None and item.state == "queued" and item.attempts == 0
    assert service.pipeline.process(item.id) == "done"

    done = service.pipeline.get(item.id)
    expected = service.score_bytes(content)
    hashes = service.hash_bytes(content)
    assert done.state == "done" and done.attempts == 1 and done.error_code is None
    assert (done.sha256, done.sha1, done.md5) == (hashes.sha256, hashes.sha1, hashes.md5)
    assert hashes.pdq is not None and done.pdq == hashes.pdq.hex
    assert done.nsfw_score == pytest.approx(expected.score, abs=1e-6)
    assert done.nsfw_model_version == expected.model_version
    assert expected.cached  # the worker stored its score by digest: the lookup found it
    [stored] = service.lookup(hashes.sha1)
    assert stored.score == done.nsfw_score
    assert (done.width, done.height, done.media_format) == (451, 300, "JPEG")
    assert (done.title, done.tags, done.uploader) == ("A cat", ["cat", "pet"], "Jo")
    assert done.match_status == "match"
    [match] = service.store.items.matches(item.id)
    assert match.bank_name == "CSAM_LIST" and match.signal_type == "pdq"
    assert len(smtp_server.messages) == 1 and takedowns(http_server) == 1
    assert sum(1 for r in http_server.requests if r.path == "/files/cat.jpg") == 1

    # A second message for the same item (a duplicate, or the sweeper's) changes nothing.
    assert service.pipeline.process(item.id) == "skipped"
    again = service.pipeline.submit(MediaSubmission(url=url, platform_id="File:Cat.jpg"))
    assert again.outcome == "skipped" and again.item is not None and again.item.id == item.id
    assert len(smtp_server.messages) == 1 and takedowns(http_server) == 1
    audit = [e for e in service.store.audit.list(limit=100) if e.subject_id == str(item.id)]
    assert sorted(e.event for e in audit) == ["action.notify", "action.takedown"]


@pytest.mark.parametrize(("threshold", "labels"), [(0.0, ["sensitive_image"]), (1.0, [])])
def test_the_nsfw_threshold_decides_the_sensitive_image_label(
    make_pipeline: Callable[..., Service], threshold: float, labels: list[str]
) -> None:
    service = make_pipeline(nsfw_threshold=threshold)
    item = service.pipeline.submit(MediaSubmission(content=jpeg_of())).item
    assert item is not None
    assert service.pipeline.process(item.id) == "done"
    done = service.pipeline.get(item.id)
    assert done.nsfw_score is not None and 0.0 < done.nsfw_score < 1.0
    assert done.sensitivity == labels


def test_uploaded_bytes_are_kept_until_the_verdict_then_deleted(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline()
    content = jpeg_of("astronaut.png")
    submitted = service.pipeline.submit(MediaSubmission(content=content, platform_id="42"))
    assert submitted.item is not None
    item_id = submitted.item.id
    assert service.store.media.content(item_id) == content
    assert service.pipeline.process(item_id) == "done"
    assert service.store.media.content(item_id) is None
    assert service.pipeline.get(item_id).nsfw_score is not None


def test_the_same_notification_is_one_item(make_pipeline: Callable[..., Service]) -> None:
    service = make_pipeline()
    content = jpeg_of()
    first = service.pipeline.submit(MediaSubmission(content=content, platform_id="p1", title="a"))
    second = service.pipeline.submit(MediaSubmission(content=content, platform_id="p1", title="b"))
    other = service.pipeline.submit(MediaSubmission(content=content, platform_id="p2"))
    assert (first.outcome, second.outcome, other.outcome) == ("created", "existing", "created")
    assert first.item and second.item and other.item
    assert second.item.id == first.item.id != other.item.id
    assert second.item.title == "b"  # the newer metadata is kept

    url = "http://127.0.0.1:9/file.jpg"
    by_url = [service.pipeline.submit(MediaSubmission(url=url, platform_id="p3")) for _ in "ab"]
    sha1 = "a" * 40
    by_sha1 = [
        service.pipeline.submit(MediaSubmission(url=u, platform_id="p4", sha1=sha1))
        for u in (url, url + "?moved")
    ]
    assert [s.outcome for s in by_url] == ["created", "existing"]
    assert [s.outcome for s in by_sha1] == ["created", "existing"]
    with service.store.engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(MEDIA_ITEMS)).scalar()
    assert count == 4


def test_an_item_scored_by_an_older_model_version_is_processed_again(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline()
    content = jpeg_of()
    sha1 = hashlib.sha1(content).hexdigest()
    item = service.pipeline.submit(MediaSubmission(content=content, platform_id="p1")).item
    assert item is not None and service.pipeline.process(item.id) == "done"
    again = MediaSubmission(content=content, platform_id="p1")
    assert service.pipeline.submit(again).outcome == "skipped"
    backfilled = MediaSubmission(
        url="http://127.0.0.1:9/p2.jpg", platform_id="p2", sha1=sha1, origin="backfill"
    )
    assert service.pipeline.submit(backfilled, dry_run=True).outcome == "skipped"

    with service.store.engine.begin() as connection:  # as if scored before a model upgrade
        connection.execute(
            sa.update(MEDIA_ITEMS).values(nsfw_model_version="open_nsfw/older/exact")
        )
    assert service.pipeline.submit(backfilled, dry_run=True).outcome == "created"
    requeued = service.pipeline.submit(again)
    assert requeued.outcome == "requeued" and requeued.item
    assert requeued.item.id == item.id and requeued.item.state == "queued"
    assert service.pipeline.process(item.id) == "done"  # the bytes came again with it
    assert service.pipeline.get(item.id).nsfw_model_version == service.nsfw().version


def test_bad_notifications_are_refused_and_nothing_is_stored(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline(max_image_bytes=200_000)
    bad: list[tuple[MediaSubmission, type[Exception]]] = [
        (MediaSubmission(url="file:///etc/passwd"), UrlRefusedError),
        (MediaSubmission(url="http://169.254.169.254/latest/meta-data/"), UrlRefusedError),
        (MediaSubmission(url="http://x/" + "a" * 5000), InvalidInputError),
        (MediaSubmission(content=b"GIF89a not really"), UnsupportedMediaError),
        (MediaSubmission(content=b"%PDF-1.4 hello"), UnsupportedMediaError),
        (MediaSubmission(content=b"x" * 300_000), MediaTooLargeError),
        (MediaSubmission(content=jpeg_of(), sha1="b" * 40), InvalidInputError),
        (MediaSubmission(url="http://example.org/a.jpg", sha1="not-a-digest"), InvalidInputError),
        (MediaSubmission(url="http://example.org/a.jpg", tags=("t",) * 201), InvalidInputError),
        (MediaSubmission(), InvalidInputError),
        (MediaSubmission(url="http://example.org/a.jpg", content=jpeg_of()), InvalidInputError),
    ]
    for submission, error in bad:
        with pytest.raises(error):
            service.pipeline.submit(submission)
    with service.store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(MEDIA_ITEMS)).scalar() == 0
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(MEDIA_CONTENT)).scalar() == 0
        )


def test_transient_failures_are_retried_with_backoff_then_succeed(
    make_pipeline: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    service = make_pipeline()
    content = jpeg_of()
    url = http_server.add_sequence(
        "/flaky.jpg",
        [(503, b"busy"), (200, b"", {"Retry-After": "0"}), (200, content)],
        content_type="image/jpeg",
        delays=[0, 3.0],  # the second answer comes after the fetch's 2 s read timeout
    )
    item = service.pipeline.submit(MediaSubmission(url=url)).item
    assert item is not None
    assert service.pipeline.process(item.id) == "retry"
    waiting = service.pipeline.get(item.id)
    assert waiting.state == "queued" and waiting.error_code == "fetch_failed"
    assert waiting.next_attempt_at is not None and waiting.next_attempt_at > utcnow()
    assert service.pipeline.process(item.id) == "skipped"  # not due yet
    time.sleep(0.1)
    assert service.pipeline.process(item.id) == "retry"
    assert service.pipeline.get(item.id).error_code == "fetch_timeout"
    assert process_until_settled(service, item.id) == "done"
    done = service.pipeline.get(item.id)
    assert done.attempts == 3 and done.error_code is None


def test_permanent_failures_are_not_retried(
    make_pipeline: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    service = make_pipeline()
    cases = {
        http_server.add("/page.html", b"<html>not an image</html>", "text/html"): (
            "unsupported_media"
        ),
        http_server.url("/status/404"): "fetch_failed",
        http_server.add("/broken.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 20): "unsupported_media",
        http_server.add("/other.jpg", jpeg_of("astronaut.png")): "digest_mismatch",
        # refused only at fetch time, after the redirect: a cloud metadata address
        http_server.redirect_url("http://169.254.169.254/latest/meta-data"): "url_refused",
    }
    for url, code in cases.items():
        sha1 = "c" * 40 if url.endswith("/other.jpg") else None
        item = service.pipeline.submit(MediaSubmission(url=url, sha1=sha1)).item
        assert item is not None
        assert service.pipeline.process(item.id) == "failed", url
        failed = service.pipeline.get(item.id)
        assert (failed.state, failed.error_code, failed.attempts) == ("failed", code, 1)
        assert failed.error_detail


def test_an_item_that_keeps_failing_gives_up_after_max_attempts(
    make_pipeline: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    service = make_pipeline(max_attempts=3)
    item = service.pipeline.submit(MediaSubmission(url=http_server.url("/status/502"))).item
    assert item is not None
    assert process_until_settled(service, item.id) == "failed"
    failed = service.pipeline.get(item.id)
    assert failed.attempts == 3 and failed.error_code == "fetch_failed"
    assert failed.error_detail and "gave up after 3 attempts" in failed.error_detail
    # An operator sends it round again, with a fresh count of attempts.
    retried = service.pipeline.retry(item.id, actor="ops")
    assert retried.state == "queued" and retried.attempts == 0
    assert service.pipeline.process(item.id) == "retry"
    assert service.pipeline.get(item.id).attempts == 1


def test_an_expired_lease_is_swept_back_and_the_old_holder_cannot_finish(
    make_pipeline: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    service = make_pipeline(lease_seconds=0.2)
    url = http_server.add("/a.jpg", jpeg_of())
    item = service.pipeline.submit(MediaSubmission(url=url)).item
    assert item is not None
    dead = service.store.media.claim(item.id, "dead-worker", 0.2)  # then it was SIGKILLed
    assert dead is not None and dead.state == "processing"
    assert service.pipeline.process(item.id) == "skipped"  # leased to someone else
    time.sleep(0.3)
    report = service.pipeline.sweep()
    assert report.requeued_leases == [item.id]
    swept = service.pipeline.get(item.id)
    assert swept.state == "queued" and swept.error_code == "lease_expired"
    assert service.pipeline.process(item.id) == "done"
    assert not service.store.media.complete(item.id, "dead-worker", _some_signals())
    assert service.pipeline.get(item.id).attempts == 2


def test_an_item_whose_worker_dies_every_time_fails_instead_of_looping(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline(lease_seconds=0.1, max_attempts=2)
    item = service.pipeline.submit(MediaSubmission(content=jpeg_of())).item
    assert item is not None
    for attempt in range(2):
        assert service.store.media.claim(item.id, f"doomed-{attempt}", 0.1) is not None
        time.sleep(0.15)
        service.pipeline.sweep()
    failed = service.pipeline.get(item.id)
    assert (failed.state, failed.error_code) == ("failed", "lease_expired")
    assert service.store.media.content(item.id) is not None  # kept for a manual retry


def test_actions_left_running_by_a_dead_process_are_surfaced_not_resent(
    make_pipeline: Callable[..., Service],
    http_server: LocalHttpServer,
    smtp_server: SmtpTestServer,
) -> None:
    service = make_pipeline(lease_seconds=0.2)
    item = submit_banked_copy(service, http_server)
    assert service.pipeline.process(item.id) == "done"
    [notify] = [a for a in service.store.items.actions(item_id=item.id) if a.action == "notify"]
    with service.store.engine.begin() as connection:  # as if it died between claim and send
        connection.execute(
            sa.text("UPDATE actions SET status = 'running', updated_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(seconds=5), "id": notify.id},
        )
    report = service.pipeline.sweep()
    assert report.interrupted_actions == [notify.id]
    action = service.store.items.get_action(notify.id)
    assert action.status == "failed" and action.detail and "interrupted" in action.detail
    assert len(smtp_server.messages) == 1


def test_actions_a_dead_worker_recorded_but_never_claimed_run_once_on_the_retry(
    make_pipeline: Callable[..., Service],
    http_server: LocalHttpServer,
    smtp_server: SmtpTestServer,
) -> None:
    service = make_pipeline(lease_seconds=0.2)
    item = submit_banked_copy(service, http_server)
    # The first worker recorded the match and its actions, then died before running them.
    assert service.store.media.claim(item.id, "dead-worker", 0.2) is not None
    bank = service.banks.get("CSAM_LIST")
    match = MatchRecord(bank.id, bank.name, bank.category, "pdq", 2, 1)
    planned = [
        PlannedAction(bank.id, "takedown", "automatic"),
        PlannedAction(bank.id, "notify", "email"),
    ]
    service.store.items.record_check(item.id, [match], planned)
    time.sleep(0.3)
    assert service.pipeline.sweep().requeued_leases == [item.id]
    assert service.pipeline.process(item.id) == "done"
    actions = service.store.items.actions(item_id=item.id)
    assert sorted((a.action, a.status) for a in actions) == [
        ("notify", "done"),
        ("takedown", "done"),
    ]
    assert len(smtp_server.messages) == 1 and takedowns(http_server) == 1
    assert service.pipeline.process(item.id) == "skipped"
    assert len(smtp_server.messages) == 1 and takedowns(http_server) == 1


def test_the_sweeper_enqueues_due_retries_and_lost_messages(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline(sweep_interval=0.1)
    queue = _RecordingQueue()
    service.pipeline.dispatcher = queue
    items = [
        service.pipeline.submit(MediaSubmission(content=encode(photo(n), "PNG"))).item
        for n in ("astronaut.png", "chelsea.png", "coffee.png")
    ]
    ids = [item.id for item in items if item is not None]
    assert queue.sent == ids
    assert service.pipeline.sweep().enqueued == []  # just enqueued: not lost
    queue.sent.clear()
    queue.lose_everything()
    with service.store.engine.begin() as connection:  # enqueued a while ago, never picked up
        connection.execute(
            sa.update(MEDIA_ITEMS).values(enqueued_at=utcnow() - timedelta(seconds=30))
        )
    assert sorted(service.pipeline.sweep().enqueued) == ids
    assert sorted(queue.sent) == ids
    assert service.pipeline.sweep().enqueued == []  # marked enqueued again


def test_a_refused_enqueue_still_stores_the_item_for_the_sweeper(
    make_pipeline: Callable[..., Service],
) -> None:
    service = make_pipeline()
    queue = _RecordingQueue(broken=True)
    service.pipeline.dispatcher = queue
    item = service.pipeline.submit(MediaSubmission(content=jpeg_of())).item
    assert item is not None and service.pipeline.get(item.id).enqueued_at is None
    queue.broken = False
    with service.store.engine.begin() as connection:
        connection.execute(
            sa.update(MEDIA_ITEMS).values(updated_at=utcnow() - timedelta(seconds=30))
        )
    assert service.pipeline.sweep().enqueued == [item.id]


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap() -> None:
    low = [retry_delay(n, 2.0, 60.0, rng=lambda: 0.0) for n in range(1, 8)]
    high = [retry_delay(n, 2.0, 60.0, rng=lambda: 1.0) for n in range(1, 8)]
    assert high == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert low == [h / 2 for h in high]


class _RecordingQueue:
    def __init__(self, *, broken: bool = False) -> None:
        self.sent: list[int] = []
        self.broken = broken
        self._held = 0

    def enqueue(self, item_ids: list[int]) -> None:  # type: ignore[override]
        if self.broken:
            raise ConnectionError("queue down")
        self.sent.extend(item_ids)
        self._held += len(item_ids)

    def pending(self) -> int:
        return self._held

    def lose_everything(self) -> None:
        self._held = 0


def _some_signals() -> SignalValues:
    return SignalValues(
        nsfw_score=0.5,
        nsfw_model_version="x",
        width=1,
        height=1,
        media_format="JPEG",
        image_sensitive=False,
        matched_terms=None,
        text_sensitive=False,
        terms_version="v",
        labelled_text=None,
    )
