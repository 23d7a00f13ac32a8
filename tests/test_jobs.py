"""The work beside the queue: scheduled exchange fetches, claimed so that one worker of many does
each, and the in-process worker's parts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mediaguard.jobs.queue import queue_path
from mediaguard.jobs.worker import InProcessWorker
from mediaguard.pipeline import MediaSubmission
from mediaguard.service import Service

from fixtures.catalogue import write_terms
from fixtures.images import jpeg_of

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


def md5_of(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def wait_for(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_fetch_exchanges_on_schedule_one_process_per_bank(
    backend: str, make_service: Callable[..., Service], tmp_path: Path
) -> None:
    listing = tmp_path / "shared-list.txt"
    listing.write_text(f"md5 {md5_of('one')}\nmd5 {md5_of('two')}\n")
    first = make_service(backend)
    second = make_service(database_url=first.settings.database_url)
    for service in (first, second):
        service.start_index(wait=True)
    first.banks.create("SHARED", exchange="local_file", exchange_config={"filename": str(listing)})
    first.banks.create("MANUAL")  # no exchange: never fetched

    outcomes = [s.banks.refresh_due(s.exchange_credentials(), 3600) for s in (first, second)]
    assert sorted(len(o) for o in outcomes) == [0, 1]  # claimed once
    fetched = next(o for o in outcomes if o)["SHARED"]
    assert not isinstance(fetched, Exception) and fetched.added == 2
    assert {m.bank for m in second.match({"md5": md5_of("two")})} == {"SHARED"}
    # Not due again within the interval; due at once with a short one.
    assert first.banks.refresh_due(first.exchange_credentials(), 3600) == {}
    listing.write_text(f"md5 {md5_of('two')}\nmd5 {md5_of('three')}\n")
    time.sleep(0.05)
    again = second.banks.refresh_due(second.exchange_credentials(), 0.01)["SHARED"]
    assert not isinstance(again, Exception) and (again.added, again.removed) == (1, 1)
    assert first.match({"md5": md5_of("one")}) == []
    events = [e.event for e in first.store.audit.list(limit=50) if e.event == "bank.fetch"]
    assert len(events) == 2


def test_the_in_process_worker_refreshes_banks_in_the_background(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"md5 {md5_of('a')}\n")
    service = make_service(bank_refresh_interval=0.2, sweep_interval=0.2)
    service.banks.create("FEED", exchange="local_file", exchange_config={"filename": str(listing)})
    with InProcessWorker(service, workers=1):
        wait_for(lambda: bool(service.match({"md5": md5_of("a")})))
        listing.write_text(f"md5 {md5_of('b')}\n")
        wait_for(lambda: bool(service.match({"md5": md5_of("b")})))
        wait_for(lambda: not service.match({"md5": md5_of("a")}))


def test_a_broken_exchange_is_reported_and_does_not_stop_the_others(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    good = tmp_path / "good.txt"
    good.write_text(f"md5 {md5_of('x')}\n")
    service = make_service()
    service.start_index(wait=True)
    service.banks.create("BROKEN", exchange="ncmec", exchange_config={})  # no credentials set
    service.banks.create("GOOD", exchange="local_file", exchange_config={"filename": str(good)})
    outcomes = service.banks.refresh_due(service.exchange_credentials(), 60)
    assert isinstance(outcomes["BROKEN"], Exception)
    assert "MEDIAGUARD_NCMEC_CREDENTIALS" in str(outcomes["BROKEN"])
    assert not isinstance(outcomes["GOOD"], Exception) and outcomes["GOOD"].added == 1


def test_the_sqlite_queue_file_sits_beside_the_database(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    service = make_service(database_url=f"sqlite:///{tmp_path / 'data' / 'wiki.db'}")
    assert queue_path(service.settings) == tmp_path / "data" / "wiki-queue.db"
    explicit = make_service(queue_path=str(tmp_path / "q.db"))
    assert queue_path(explicit.settings) == tmp_path / "q.db"


def test_the_in_process_worker_relabels_items_when_the_term_list_changes(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    terms = write_terms(tmp_path / "terms.txt", "cat")
    service = make_service(
        sensitive_terms_file=str(terms), terms_refresh_interval=0.2, sweep_interval=0.2
    )
    with InProcessWorker(service, workers=1):
        items = [
            service.pipeline.submit(
                MediaSubmission(content=jpeg_of(), platform_id=name, title=f"a {name}")
            ).item
            for name in ("cat", "dog")
        ]
        assert items[0] is not None and items[1] is not None
        wait_for(
            lambda: (
                service.pipeline.states([i.id for i in items])
                == {items[0].id: "done", items[1].id: "done"}
            )
        )
        labels = [service.pipeline.get(item.id).sensitivity for item in items]
        assert labels == [["sensitive_text"], []]
        write_terms(terms, "dog")
        wait_for(lambda: service.pipeline.get(items[1].id).matched_terms == ["dog"])
        wait_for(lambda: service.terms.status().stale == 0)
    assert service.pipeline.get(items[0].id).sensitivity == []
    assert service.terms.status().terms == 1
