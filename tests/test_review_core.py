"""`Review` and `ReviewRepository` below the API, on SQLite and PostgreSQL: soft locks, the
report rate limit under concurrent reports, and the checks made before anything is stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa

from mediaguard.errors import ConflictError, InvalidInputError, NotFoundError, RateLimitedError
from mediaguard.pipeline import MediaSubmission
from mediaguard.service import Service
from mediaguard.store.db import utcnow
from mediaguard.store.models import AUDIT_LOG, DECISIONS, REPORTS

from fixtures.images import jpeg_of

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_item(service: Service, platform_id: str) -> int:
    """A stored (unprocessed) item: enough to report, lock and decide on."""
    item = service.pipeline.submit(MediaSubmission(content=jpeg_of(), platform_id=platform_id)).item
    assert item is not None
    return item.id


def attempt(service: Service, item_id: int, reporter: str) -> str:
    try:
        service.review.report(item_id, "sensitive", None, reporter=reporter)
    except RateLimitedError:
        return "refused"
    return "filed"


def at_once(call: Callable[[], str], times: int) -> list[str]:
    """``call`` in ``times`` threads released together; the results."""
    barrier = threading.Barrier(times)
    results: list[str] = []

    def run() -> None:
        barrier.wait(timeout=10)
        results.append(call())

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == times, "a call failed or did not finish"
    return results


def holder(service: Service, item_id: int) -> str | None:
    lock = service.store.review.lock_of(item_id)
    return lock.reviewer if lock is not None else None


def count(service: Service, table: sa.Table) -> int:
    with service.store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_free_item_is_locked_and_only_its_holder_extends_or_releases_it(
    service: Service,
) -> None:
    repository = service.store.review
    item_id = new_item(service, "a")
    started = utcnow()

    lock = repository.lock(item_id, "alice", 300)
    assert (lock.item_id, lock.reviewer) == (item_id, "alice")
    assert started + timedelta(seconds=299) < lock.until < utcnow() + timedelta(seconds=301)
    assert holder(service, item_id) == "alice"

    extended = repository.lock(item_id, "alice", 600)
    assert extended.until > lock.until
    with pytest.raises(ConflictError, match="alice"):
        repository.lock(item_id, "bob", 300)
    with pytest.raises(ConflictError, match="alice"):
        repository.unlock(item_id, "bob")
    assert holder(service, item_id) == "alice"
    repository.unlock(item_id, "alice")
    assert holder(service, item_id) is None
    assert repository.lock(item_id, "bob", 300).reviewer == "bob"
    with pytest.raises(NotFoundError):
        repository.lock(404_404, "bob", 300)


def test_an_expired_lock_is_taken_by_the_next_reviewer(service: Service) -> None:
    repository = service.store.review
    item_id = new_item(service, "a")
    repository.lock(item_id, "alice", 0.2)
    with pytest.raises(ConflictError):
        repository.lock(item_id, "bob", 300)
    time.sleep(0.3)
    assert holder(service, item_id) is None
    assert repository.lock(item_id, "bob", 300).reviewer == "bob"
    assert holder(service, item_id) == "bob"


def test_claimed_entries_carry_the_new_lock(service: Service) -> None:
    ids = [new_item(service, name) for name in "abc"]
    for item_id in ids:
        service.review.report(item_id, "sensitive", None, reporter="token:client")

    claimed = service.review.claim_next("alice", count=2)
    assert [entry.item.id for entry in claimed] == ids[:2]
    assert [entry.waiting.locked_by for entry in claimed] == ["alice", "alice"]
    assert all(entry.waiting.locked_until is not None for entry in claimed)


def test_concurrent_reports_never_exceed_the_hourly_limit(
    make_service: Callable[..., Service], backend: str
) -> None:
    """Bursts of simultaneous reports from one reporter (several bursts, several reporters, so
    that a race shows whatever the thread scheduling)."""
    service = make_service(backend, report_rate_limit=3)
    item_id = new_item(service, "a")
    senders, bursts = 16, 5
    filed: dict[str, int] = {}

    for burst in range(bursts):
        reporter = f"token:burst-{burst}"
        outcomes = at_once(partial(attempt, service, item_id, reporter), senders)
        filed[reporter] = outcomes.count("filed")

    assert filed == {f"token:burst-{burst}": 3 for burst in range(bursts)}
    assert count(service, REPORTS) == 3 * bursts


def test_reports_are_checked_before_anything_is_stored(
    make_service: Callable[..., Service], backend: str
) -> None:
    service = make_service(backend, report_rate_limit=2)
    review = service.review
    item_id = new_item(service, "a")
    for reason, description in [
        ("spam", None),
        ("other", None),
        ("other", "   " + "x" * 19 + "   "),
        ("sensitive", "d" * 2001),
    ]:
        with pytest.raises(InvalidInputError):
            review.report(item_id, reason, description, reporter="token:t")
    with pytest.raises(NotFoundError):
        review.report(404_404, "sensitive", None, reporter="token:t")
    assert count(service, REPORTS) == 0 and count(service, AUDIT_LOG) == 0

    filed = review.report(item_id, "other", "  " + "x" * 20 + "\n", reporter="token:t")
    assert (filed.reason, filed.description, filed.status) == ("other", "x" * 20, "pending")
    blank = review.report(item_id, "copyright", "   ", reporter="token:t")
    assert blank.description is None
    with pytest.raises(RateLimitedError) as refused:
        review.report(item_id, "sensitive", None, reporter="token:t")
    assert 3590 <= refused.value.retry_after <= 3600
    assert review.report(item_id, "sensitive", None, reporter="ip:192.0.2.1").status == "pending"
    assert count(service, REPORTS) == 3


def test_decisions_are_checked_before_anything_is_stored(service: Service) -> None:
    review = service.review
    item_id = new_item(service, "a")
    for ids, action, notes in [
        ([item_id], "delete", None),
        ([], "rejected_reports", None),
        (list(range(1, 502)), "rejected_reports", None),
        ([item_id], "rejected_reports", "n" * 2001),
    ]:
        with pytest.raises(InvalidInputError):
            review.decide(ids, action, reviewer="alice", notes=notes)
    with pytest.raises(NotFoundError, match="404404"):
        review.decide([item_id, 404_404], "marked_sensitive", reviewer="alice")
    with pytest.raises(ConflictError):
        review.decide([item_id], "reversed_deindex", reviewer="alice")
    assert count(service, DECISIONS) == 0 and count(service, AUDIT_LOG) == 0

    decision = review.decide([item_id] * 501, "marked_sensitive", reviewer="alice", notes="  \n ")
    assert decision.item_ids == [item_id] and decision.notes is None
    assert service.store.items.get(item_id).reported_sensitive is True
