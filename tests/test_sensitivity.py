"""Sensitivity labels: computed when an item is processed, and re-evaluated in the background
(resumably, with progress) when the term list changes; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from mediaguard.jobs.terms import BATCH, TermKeeper, redacted
from mediaguard.service import Service
from mediaguard.store.db import utcnow
from mediaguard.store.models import MEDIA_ITEMS, TERM_LISTS

from fixtures.catalogue import add_item, write_terms
from fixtures.servers import LocalHttpServer

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def labelled(
    request: pytest.FixtureRequest, make_service: Callable[..., Service], tmp_path: Path
) -> Callable[..., Service]:
    def make(*terms: str, **overrides: object) -> Service:
        path = write_terms(tmp_path / "terms.txt", *terms)
        # Interval 0: every tick re-reads the list, as a round after the interval would.
        settings = {"terms_refresh_interval": 0.0, **overrides}
        service = make_service(request.param, sensitive_terms_file=str(path), **settings)
        service.terms.load()
        service.start_index(wait=True)
        return service

    return make


def test_items_are_labelled_when_processed(labelled: Callable[..., Service]) -> None:
    service = labelled("nude beach", "gore")
    flagged = add_item(service, "a", "Evening at the Nude-Beach", "calm", ["sunset"])
    by_tag = add_item(service, "b", "A walk", "in town", ["GORE", "street"])
    clean = add_item(service, "c", "Scunthorpe market", "Essex in spring", ["gorey", "beach"])
    assert flagged.sensitivity == ["sensitive_text"]
    assert flagged.matched_terms == ["nude beach"]
    assert by_tag.matched_terms == ["gore"]
    assert clean.sensitivity == [] and clean.matched_terms is None
    assert {item.terms_version for item in (flagged, by_tag, clean)} == {
        service.terms.matcher().version
    }


def test_the_nsfw_threshold_gives_the_image_label(labelled: Callable[..., Service]) -> None:
    item = add_item(labelled(nsfw_threshold=0.0), "a", "A cat")
    assert item.sensitivity == ["sensitive_image"] and item.image_sensitive


def test_a_changed_list_relabels_every_item_in_the_background(
    labelled: Callable[..., Service], tmp_path: Path
) -> None:
    service = labelled("cat")
    items = [add_item(service, f"p{n}", f"Photo {n} of a cat", None) for n in range(3)]
    items.append(add_item(service, "dog", "A dog", None))
    assert [item.text_sensitive for item in items] == [True, True, True, False]

    write_terms(tmp_path / "terms.txt", "dog")
    assert service.terms.tick() is False  # loaded the new list and relabelled everything
    after = [service.pipeline.get(item.id) for item in items]
    assert [item.text_sensitive for item in after] == [False, False, False, True]
    assert after[3].matched_terms == ["dog"] and after[0].matched_terms is None
    status = service.terms.status()
    assert status.terms == 1 and status.relabelled == 4 and status.stale == 0
    assert status.finished_at is not None


def test_relabelling_is_resumable_and_only_one_process_walks(
    labelled: Callable[..., Service], tmp_path: Path
) -> None:
    service = labelled()
    template = add_item(service, "seed", "seed")
    count = BATCH * 2 + 10
    with service.store.engine.begin() as connection:  # items processed under the empty list
        row = dict(
            connection.execute(sa.select(*MEDIA_ITEMS.c).where(MEDIA_ITEMS.c.id == template.id))
            .one()
            ._mapping
        )
        del row["id"]
        connection.execute(
            sa.insert(MEDIA_ITEMS),
            [
                {**row, "intake_key": f"k{n}", "title": f"a cat {n}" if n % 2 else f"dog {n}"}
                for n in range(count)
            ],
        )
    write_terms(tmp_path / "terms.txt", "cat")
    other = TermKeeper(
        service.settings, service.store.terms, service.fetcher, service.metrics, "other-host:1"
    )
    service.terms.load()
    # One batch, then the process "dies" holding the lease: the other process waits for it.
    assert service.terms.relabel(budget=0.0) is True
    assert other.relabel() is False
    assert service.terms.status().relabelled == BATCH
    with service.store.engine.begin() as connection:  # the lease runs out
        connection.execute(
            sa.update(TERM_LISTS).values(relabel_lease_until=utcnow() - timedelta(seconds=1))
        )
    while other.relabel(budget=0.0):
        pass
    status = service.terms.status()
    assert status.stale == 0 and status.relabelled == count + 1
    with service.store.engine.connect() as connection:
        flagged = connection.execute(
            sa.select(sa.func.count()).where(MEDIA_ITEMS.c.text_sensitive)
        ).scalar_one()
    assert flagged == count // 2


def test_items_labelled_with_an_old_list_after_the_walk_are_caught_up(
    labelled: Callable[..., Service], tmp_path: Path
) -> None:
    service = labelled("cat")
    item = add_item(service, "a", "a dog")
    write_terms(tmp_path / "terms.txt", "dog")
    service.terms.tick()
    with service.store.engine.begin() as connection:  # a worker still on the old list
        connection.execute(sa.update(MEDIA_ITEMS).values(terms_version="old", text_sensitive=False))
    assert service.terms.status().stale == 1
    service.terms.tick()
    assert service.pipeline.get(item.id).matched_terms == ["dog"]
    assert service.terms.status().stale == 0


def test_an_unreadable_list_keeps_the_list_in_force(
    labelled: Callable[..., Service], tmp_path: Path
) -> None:
    service = labelled("cat")
    version = service.terms.status().version
    (tmp_path / "terms.txt").unlink()
    service.terms.tick()
    assert service.terms.status().version == version
    (tmp_path / "terms.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    service.terms.tick()
    assert service.terms.status().version == version
    assert add_item(service, "a", "a cat").matched_terms == ["cat"]


def test_a_list_changed_back_is_in_force_again(
    labelled: Callable[..., Service], tmp_path: Path
) -> None:
    service = labelled("cat")
    first = service.terms.status().version
    write_terms(tmp_path / "terms.txt", "dog")
    service.terms.tick()
    write_terms(tmp_path / "terms.txt", "cat")
    service.terms.tick()
    assert service.terms.status().version == first
    assert add_item(service, "a", "a cat").matched_terms == ["cat"]


def test_the_list_comes_from_a_url_through_the_guarded_fetcher(
    make_service: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    url = http_server.add("/terms.txt", b"# list\nnude beach\n", "text/plain")
    service = make_service(sensitive_terms_url=url)
    service.terms.load()
    assert service.terms.status().terms == 1 and service.terms.status().source == url
    refused = make_service(sensitive_terms_url=url, fetch_allow_loopback=False)
    refused.terms.tick()  # refused by the guard: logged, no list
    assert refused.terms.status().terms == 0


def test_a_list_urls_secrets_stay_out_of_the_database_and_logs() -> None:
    assert redacted("https://u:p@lists.example:8443/t.txt?sig=abc#x") == (
        "https://lists.example:8443/t.txt"
    )
    assert redacted("/etc/mediaguard/terms.txt") == "/etc/mediaguard/terms.txt"


def test_a_worker_labels_with_the_list_another_process_put_in_force(
    labelled: Callable[..., Service], make_service: Callable[..., Service]
) -> None:
    loader = labelled("cat")
    worker = make_service(database_url=loader.settings.database_url)  # never loads a list
    worker.start_index(wait=True)
    item = add_item(worker, "a", "a cat")
    assert item.matched_terms == ["cat"] and item.terms_version == loader.terms.status().version
