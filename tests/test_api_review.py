"""User reports (`POST /v1/media/{id}/report`), the reviewers' queue, soft locks and decisions
(`/v1/review`), and what decisions do to catalogue search at once; over real HTTP on SQLite and
PostgreSQL, with real processed photos and a real bank match waiting for review."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from mediaguard.pipeline import MediaSubmission
from mediaguard.service import Service
from mediaguard.store import Role
from mediaguard.store.models import (
    ACTIONS,
    AUDIT_LOG,
    DECISION_ITEMS,
    DECISIONS,
    MEDIA_ITEMS,
    REPORTS,
    REVIEW_LOCKS,
)

from fixtures.actions import bank_photo
from fixtures.images import jpeg_of
from fixtures.service import LiveApi

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
# The photo the `other` bank holds: an item showing it waits for a reviewer.
BANKED = "coffee.png"
# Every search query of these tests: a word in every test item's title.
WORD = "harbour"
OTHER_TEXT = "It shows a private letter with a home address"


T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` in threads released together; their results in order (an error re-raised)."""
    barrier = threading.Barrier(len(calls))
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # re-raised by the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert len(results) == len(calls), "a call did not finish"
    return [results[index] for index in range(len(calls))]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@cache
def jpeg(name: str) -> bytes:
    return jpeg_of(name)


@dataclass
class World:
    """A live API, a token per role (two reviewers, two clients), and helpers."""

    api: LiveApi
    admin: dict[str, str]
    reviewer: dict[str, str]
    reviewer2: dict[str, str]
    client: dict[str, str]
    client2: dict[str, str]

    @property
    def service(self) -> Service:
        return self.api.service

    @property
    def http(self) -> httpx.Client:
        return self.api.client

    def item(
        self,
        platform_id: str,
        title: str = f"Fishing boats in the {WORD}",
        *,
        photo: str = "chelsea.png",
        tags: tuple[str, ...] = ("boats",),
    ) -> int:
        """A processed item (the same photo under another platform id is another item)."""
        item = self.service.pipeline.submit(
            MediaSubmission(
                content=jpeg(photo),
                platform_id=platform_id,
                title=title,
                description="Taken at dawn",
                tags=tags,
                uploader="Jo",
            )
        ).item
        assert item is not None
        assert self.service.pipeline.process(item.id) == "done"
        return item.id

    def report(
        self,
        item_id: int,
        reason: str = "sensitive",
        description: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"reason": reason}
        if description is not None:
            body["description"] = description
        return self.http.post(
            f"/v1/media/{item_id}/report", json=body, headers=headers or self.client
        )

    def reported(self, item_id: int, reason: str = "sensitive") -> dict[str, Any]:
        response = self.report(item_id, reason, OTHER_TEXT if reason == "other" else None)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def decide(
        self,
        ids: list[int],
        action: str,
        headers: dict[str, str] | None = None,
        notes: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"media_ids": ids, "action": action}
        if notes is not None:
            body["notes"] = notes
        return self.http.post("/v1/review/decisions", json=body, headers=headers or self.reviewer)

    def decided(self, ids: list[int], action: str, **kwargs: Any) -> dict[str, Any]:
        response = self.decide(ids, action, **kwargs)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def queue(self, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        response = self.http.get(
            "/v1/review/queue", params=params, headers=headers or self.reviewer
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def queued_ids(self, headers: dict[str, str] | None = None, **params: Any) -> list[int]:
        return [entry["media"]["id"] for entry in self.queue(headers, **params)["entries"]]

    def claim(self, headers: dict[str, str], count: int = 1) -> list[dict[str, Any]]:
        response = self.http.post("/v1/review/next", params={"count": count}, headers=headers)
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    def decisions(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/v1/review/decisions", params=params, headers=self.reviewer)
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    def lock(self, item_id: int, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(f"/v1/review/media/{item_id}/lock", headers=headers)

    def unlock(self, item_id: int, headers: dict[str, str]) -> httpx.Response:
        return self.http.delete(f"/v1/review/media/{item_id}/lock", headers=headers)

    def shown(self, item_id: int) -> dict[str, Any]:
        """The reviewer's page of one item."""
        response = self.http.get(f"/v1/review/media/{item_id}", headers=self.reviewer)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def search(self, include_sensitive: bool = False, q: str = WORD) -> dict[int, list[str]]:
        """The ids the catalogue search finds, with each result's `sensitivity`."""
        response = self.http.get(
            "/v1/search",
            params={"q": q, "include_sensitive_results": include_sensitive, "page_size": 50},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["result_count"] == len(page["results"]), page
        return {result["id"]: result["sensitivity"] for result in page["results"]}

    def audit(self, item_id: int) -> list[dict[str, Any]]:
        response = self.http.get(
            "/v1/audit",
            params={"subject_type": "item", "subject_id": str(item_id)},
            headers=self.reviewer,
        )
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    def rows(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[sa.Row[Any]]:
        """Straight from the database, past every cache and API."""
        query = sa.select(table).where(*where).order_by(*table.primary_key.columns)
        with self.service.store.engine.connect() as connection:
            return list(connection.execute(query).all())


@pytest.fixture
def make_world(
    backend: str, make_api: Callable[..., LiveApi], tmp_path: Path
) -> Callable[..., World]:
    """`make_world(terms=(...), **settings)`: a live API on `backend`, its PDQ index ready."""

    def make(*, terms: tuple[str, ...] = (), **settings: object) -> World:
        if terms:
            path = tmp_path / "terms.txt"
            path.write_text("".join(f"{term}\n" for term in terms), encoding="utf-8")
            settings["sensitive_terms_file"] = str(path)
        api = make_api(backend, **settings)
        if terms:
            api.service.terms.load()
        api.service.start_index(wait=True)

        def token(name: str, role: Role) -> dict[str, str]:
            return api.as_(api.service.create_token(name, role)[0])

        return World(
            api,
            admin=token("admin-1", "admin"),
            reviewer=token("reviewer-1", "reviewer"),
            reviewer2=token("reviewer-2", "reviewer"),
            client=token("client-1", "client"),
            client2=token("client-2", "client"),
        )

    return make


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def bank_review_item(world: World, platform_id: str = "File:Coffee.jpg") -> int:
    """An item matching a bank of category `other`: a `review` action waits for a reviewer."""
    bank_photo(world.service, "SPAM_LIST", "other", BANKED)
    item_id = world.item(platform_id, f"Coffee by the {WORD}", photo=BANKED)
    actions = world.service.store.items.actions(item_id=item_id)
    assert [(action.action, action.status) for action in actions] == [("review", "queued")]
    return item_id


def assert_error(response: httpx.Response, status: int, code: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    assert body["detail"]
    return body["detail"]


# -- reports -------------------------------------------------------------------------------


def test_a_client_or_a_reviewer_files_a_pending_report(world: World) -> None:
    item_id = world.item("File:Boats.jpg")
    started = datetime.now(UTC)

    response = world.report(item_id, "sensitive", headers=world.client)
    assert response.status_code == 201, response.text
    first = response.json()
    assert set(first) == {"id", "media_id", "reason", "description", "status", "created_at"}
    assert (first["media_id"], first["reason"], first["status"]) == (
        item_id,
        "sensitive",
        "pending",
    )
    assert first["description"] is None
    created = datetime.fromisoformat(first["created_at"])
    assert started - timedelta(seconds=5) <= created <= datetime.now(UTC) + timedelta(seconds=5)

    by_reviewer = world.report(item_id, "copyright", "  Mine, from my book  ", world.reviewer)
    assert by_reviewer.status_code == 201, by_reviewer.text
    assert by_reviewer.json()["description"] == "Mine, from my book"
    other = world.report(item_id, "other", OTHER_TEXT, world.client2)
    assert other.status_code == 201 and other.json()["reason"] == "other"
    assert world.report(item_id, "sensitive", headers=world.admin).status_code == 201

    stored = world.rows(REPORTS)
    assert [(row.reason, row.status, row.reporter, row.decision_id) for row in stored] == [
        ("sensitive", "pending", "token:client-1", None),
        ("copyright", "pending", "token:reviewer-1", None),
        ("other", "pending", "token:client-2", None),
        ("sensitive", "pending", "token:admin-1", None),
    ]
    audit = world.audit(item_id)
    assert [(entry["event"], entry["actor"], entry["reason"]) for entry in audit] == [
        ("report.create", "token:admin-1", "sensitive"),
        ("report.create", "token:client-2", "other"),
        ("report.create", "token:reviewer-1", "copyright"),
        ("report.create", "token:client-1", "sensitive"),
    ]
    assert [entry["details"]["report_id"] for entry in audit] == [row.id for row in stored][::-1]
    assert {entry["result"] for entry in audit} == {"pending"}


def test_bad_reports_are_refused_and_nothing_is_stored(world: World) -> None:
    item_id = world.item("File:Boats.jpg")
    url = f"/v1/media/{item_id}/report"

    assert_error(world.http.post(url, json={"reason": "sensitive"}), 401, "unauthenticated")
    bad_token = {"Authorization": "Bearer mg_not-a-real-token"}
    assert_error(world.report(item_id, headers=bad_token), 401, "unauthenticated")
    assert_error(world.report(404_404), 404, "not_found")
    for short in (None, "", "too short", " " * 30, "x" * 19):
        assert_error(world.report(item_id, "other", short), 400, "invalid_input")
    assert world.report(item_id, "other", "y" * 20).status_code == 201
    assert_error(world.report(item_id, "spam"), 400, "invalid_input")
    assert_error(world.report(item_id, "sensitive", "z" * 2001), 400, "invalid_input")
    bodies: list[Any] = [
        {"reason": 5},
        {"reason": ["sensitive"]},
        {"reason": "sensitive", "description": 123},
        {"reason": "sensitive", "description": {"text": "x"}},
        {"description": OTHER_TEXT},
        [],
        "sensitive",
    ]
    for body in bodies:
        assert_error(world.http.post(url, json=body, headers=world.client), 400, "invalid_input")
    for raw in (b"{", b"reason=sensitive", b"", b'{"reason": "sensitive",}'):
        response = world.http.post(
            url, content=raw, headers={**world.client, "Content-Type": "application/json"}
        )
        assert_error(response, 400, "invalid_input")
    path_not_an_id = world.http.post(
        "/v1/media/abc/report", json={"reason": "sensitive"}, headers=world.client
    )
    assert_error(path_not_an_id, 400, "invalid_input")

    assert [(row.reason, row.description) for row in world.rows(REPORTS)] == [("other", "y" * 20)]
    assert [entry["event"] for entry in world.audit(item_id)] == ["report.create"]


def test_reports_are_rate_limited_per_token(make_world: Callable[..., World]) -> None:
    world = make_world(report_rate_limit=3)
    first, second = world.item("File:A.jpg"), world.item("File:B.jpg")
    for item_id in (first, second, first):
        assert world.report(item_id).status_code == 201

    refused = world.report(second, "copyright")
    assert_error(refused, 429, "rate_limited")
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 3500 <= int(retry_after) <= 3600, retry_after
    # Refused whatever the report: a valid one for another reason, on another item.
    assert world.report(first, "other", OTHER_TEXT).status_code == 429
    assert len(world.rows(REPORTS)) == 3

    # Another client, and a reviewer, each have their own allowance.
    for headers in (world.client2, world.reviewer):
        for _ in range(3):
            assert world.report(second, headers=headers).status_code == 201
        assert world.report(second, headers=headers).status_code == 429
    assert len(world.rows(REPORTS)) == 9
    assert len(world.rows(AUDIT_LOG, AUDIT_LOG.c.event == "report.create")) == 9
    # An unknown item is still a 404, not a 429.
    assert_error(world.report(404_404), 404, "not_found")


# -- the queue -----------------------------------------------------------------------------


def test_the_queue_lists_waiting_items_oldest_first_one_row_each(
    make_world: Callable[..., World],
) -> None:
    world = make_world(terms=("nude beach",))
    quiet = world.item("File:Quiet.jpg")
    first = world.item("File:First.jpg", f"Nude beach by the {WORD}")
    second = world.item("File:Second.jpg")
    world.reported(first, "sensitive")
    world.reported(first, "copyright")
    world.reported(first, "sensitive")
    world.reported(second, "other")
    banked = bank_review_item(world)
    world.reported(second, "sensitive")

    assert_error(world.http.get("/v1/review/queue"), 401, "unauthenticated")
    assert_error(world.http.get("/v1/review/queue", headers=world.client), 403, "forbidden")
    assert world.queue(world.admin)["total"] == 3

    page = world.queue()
    assert page["total"] == 3
    entries = page["entries"]
    assert [entry["media"]["id"] for entry in entries] == [first, second, banked]
    assert quiet not in [entry["media"]["id"] for entry in entries]
    by_id = {entry["media"]["id"]: entry for entry in entries}

    top = by_id[first]
    assert top["report_count"] == 3 and top["reasons"] == {"sensitive": 2, "copyright": 1}
    assert [report["reason"] for report in top["pending_reports"]] == [
        "sensitive",
        "copyright",
        "sensitive",
    ]
    assert {report["status"] for report in top["pending_reports"]} == {"pending"}
    assert top["bank_review"] is False and top["matches"] == []
    assert top["media"]["matched_terms"] == ["nude beach"]
    assert top["media"]["sensitivity"] == ["sensitive_text"]
    stored = world.service.store.items.get(first)
    assert top["nsfw_score"] == pytest.approx(stored.nsfw_score)
    assert top["media"]["signals"]["nsfw"]["score"] == pytest.approx(stored.nsfw_score)
    assert top["locked_by"] is None and top["locked_until"] is None
    waiting_since = datetime.fromisoformat(top["waiting_since"])
    assert waiting_since == datetime.fromisoformat(top["pending_reports"][0]["created_at"])

    assert by_id[second]["report_count"] == 2
    assert by_id[second]["reasons"] == {"other": 1, "sensitive": 1}
    assert by_id[second]["media"]["matched_terms"] == []

    bank = by_id[banked]
    assert bank["bank_review"] is True and bank["report_count"] == 0 and bank["reasons"] == {}
    assert bank["pending_reports"] == []
    [match] = bank["matches"]
    assert (match["bank"], match["category"]) == ("SPAM_LIST", "other")
    assert match["signal_type"] == "pdq" and 0 <= match["distance"] <= 31
    assert match["bank_id"] == world.service.banks.get("SPAM_LIST").id
    assert bank["media"]["matches"] == bank["matches"]
    assert bank["media"]["match_status"] == "match"

    # A report on the banked item too: still one row for it, now with both.
    world.reported(banked, "copyright")
    entries = world.queue()["entries"]
    assert [entry["media"]["id"] for entry in entries] == [first, second, banked]
    assert entries[2]["bank_review"] is True and entries[2]["report_count"] == 1

    assert world.queued_ids(limit=2) == [first, second]
    assert world.queued_ids(limit=2, offset=2) == [banked]
    assert world.queue(limit=2, offset=2)["total"] == 3
    assert world.queued_ids(offset=3) == []
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
        response = world.http.get("/v1/review/queue", params=params, headers=world.reviewer)
        assert_error(response, 400, "invalid_input")


def test_items_held_by_another_reviewer_leave_their_queue(world: World) -> None:
    ids = [world.item(f"File:{n}.jpg") for n in range(3)]
    for item_id in ids:
        world.reported(item_id)

    held = world.lock(ids[0], world.reviewer)
    assert held.status_code == 200, held.text
    assert held.json()["reviewer"] == "reviewer-1"

    assert world.queued_ids(world.reviewer2) == ids[1:]
    assert world.queue(world.reviewer2)["total"] == 2
    everything = world.queue(world.reviewer2, include_locked=True)
    assert everything["total"] == 3
    assert [entry["locked_by"] for entry in everything["entries"]] == ["reviewer-1", None, None]
    assert everything["entries"][0]["locked_until"] is not None
    own = world.queue(world.reviewer)["entries"]
    assert [entry["media"]["id"] for entry in own] == ids
    assert own[0]["locked_by"] == "reviewer-1"


# -- claiming and locks --------------------------------------------------------------------


def test_next_claims_the_oldest_free_items_with_a_lock(world: World) -> None:
    ids = [world.item(f"File:{n}.jpg") for n in range(4)]
    for item_id in ids:
        world.reported(item_id)
    assert_error(world.http.post("/v1/review/next", headers=world.client), 403, "forbidden")
    for count in (0, 51, "x"):
        response = world.http.post(
            "/v1/review/next", params={"count": count}, headers=world.reviewer
        )
        assert_error(response, 400, "invalid_input")

    mine = world.claim(world.reviewer, count=2)
    assert [entry["media"]["id"] for entry in mine] == ids[:2]
    for entry in mine:
        assert entry["report_count"] == 1 and entry["reasons"] == {"sensitive": 1}
        assert entry["pending_reports"][0]["status"] == "pending"

    theirs = world.claim(world.reviewer2, count=5)
    assert [entry["media"]["id"] for entry in theirs] == ids[2:]
    for item_id in ids[:2]:
        assert world.shown(item_id)["lock"]["reviewer"] == "reviewer-1"
    assert world.rows(REVIEW_LOCKS, REVIEW_LOCKS.c.reviewer == "reviewer-2")
    assert {row.item_id for row in world.rows(REVIEW_LOCKS)} == set(ids)


def test_claimed_entries_show_the_lock_just_taken(world: World) -> None:
    item_id = world.item("File:A.jpg")
    world.reported(item_id)
    before = datetime.now(UTC)
    [entry] = world.claim(world.reviewer)
    assert entry["media"]["id"] == item_id
    # The answer tells whose the item is now, and until when, as the queue then does.
    assert entry["locked_by"] == "reviewer-1", entry
    until = datetime.fromisoformat(entry["locked_until"])
    assert before + timedelta(seconds=290) < until < before + timedelta(seconds=310)
    [queued] = world.queue()["entries"]
    assert (queued["locked_by"], queued["locked_until"]) == ("reviewer-1", entry["locked_until"])


def test_two_reviewers_claiming_at_once_never_get_the_same_item(world: World) -> None:
    ids = [world.item(f"File:{n}.jpg") for n in range(10)]
    for item_id in ids:
        world.reported(item_id)

    # Each round starts with every item free; in the first the two want more than there is.
    for count in (10, 5, 3):
        with world.service.store.engine.begin() as connection:
            connection.execute(sa.delete(REVIEW_LOCKS))
        first, second = at_once(
            partial(world.claim, world.reviewer, count),
            partial(world.claim, world.reviewer2, count),
        )
        one = [entry["media"]["id"] for entry in first]
        two = [entry["media"]["id"] for entry in second]
        assert not set(one) & set(two), (count, one, two)
        if count == 10:
            assert sorted(one + two) == ids, (one, two)
        else:
            assert len(one) == len(two) == count, (count, one, two)
        holders = {row.item_id: row.reviewer for row in world.rows(REVIEW_LOCKS)}
        assert holders == {
            **{item_id: "reviewer-1" for item_id in one},
            **{item_id: "reviewer-2" for item_id in two},
        }


def test_lock_and_release(world: World) -> None:
    item_id, other_id = world.item("File:A.jpg"), world.item("File:B.jpg")
    world.reported(item_id)
    assert_error(world.lock(item_id, world.client), 403, "forbidden")
    assert_error(world.lock(item_id, {}), 401, "unauthenticated")
    assert_error(world.lock(404_404, world.reviewer), 404, "not_found")

    before = datetime.now(UTC)
    first = world.lock(item_id, world.reviewer)
    assert first.status_code == 200, first.text
    assert set(first.json()) == {"reviewer", "until"}
    until = datetime.fromisoformat(first.json()["until"])
    assert before + timedelta(seconds=290) < until < before + timedelta(seconds=310)
    time.sleep(0.01)
    extended = world.lock(item_id, world.reviewer).json()
    assert extended["reviewer"] == "reviewer-1"
    assert datetime.fromisoformat(extended["until"]) > until

    detail = assert_error(world.lock(item_id, world.reviewer2), 409, "conflict")
    assert "reviewer-1" in detail
    # Another reviewer may not release it: 409, and the lock stays.
    assert "reviewer-1" in assert_error(world.unlock(item_id, world.reviewer2), 409, "conflict")
    assert_error(world.lock(item_id, world.reviewer2), 409, "conflict")
    assert world.shown(item_id)["lock"]["reviewer"] == "reviewer-1"

    # The other reviewer cannot decide on it, alone or in a bulk decision: nothing is written.
    assert_error(world.decide([item_id], "rejected_reports", world.reviewer2), 409, "conflict")
    bulk = world.decide([other_id, item_id], "marked_sensitive", world.reviewer2)
    assert str(item_id) in assert_error(bulk, 409, "conflict")
    assert world.rows(DECISIONS) == [] and world.rows(DECISION_ITEMS) == []
    assert world.service.store.items.get(other_id).reported_sensitive is False
    assert [row.status for row in world.rows(REPORTS)] == ["pending"]

    released = world.unlock(item_id, world.reviewer)
    assert released.status_code == 204 and released.content == b""
    assert world.shown(item_id)["lock"] is None
    assert world.lock(item_id, world.reviewer2).json()["reviewer"] == "reviewer-2"
    # Releasing what nobody holds is harmless; an item need not be queued to be locked.
    assert world.unlock(other_id, world.reviewer).status_code == 204
    assert world.lock(other_id, world.reviewer).status_code == 200

    # The holder's own decision goes through and frees the item.
    world.decided([item_id], "rejected_reports", headers=world.reviewer2)
    assert [(row.item_id, row.reviewer) for row in world.rows(REVIEW_LOCKS)] == [
        (other_id, "reviewer-1")
    ]


def test_an_expired_lock_frees_the_item(make_world: Callable[..., World]) -> None:
    world = make_world(review_lock_seconds=0.3)
    item_id = world.item("File:A.jpg")
    world.reported(item_id)

    assert [entry["media"]["id"] for entry in world.claim(world.reviewer)] == [item_id]
    assert world.claim(world.reviewer2) == []
    assert world.queued_ids(world.reviewer2) == []
    assert_error(world.lock(item_id, world.reviewer2), 409, "conflict")

    time.sleep(0.4)
    assert world.queued_ids(world.reviewer2) == [item_id]
    assert world.shown(item_id)["lock"] is None
    [taken] = world.claim(world.reviewer2)
    assert taken["media"]["id"] == item_id
    # Now the first reviewer is the other one: refused, and nothing decided.
    assert_error(world.decide([item_id], "marked_sensitive"), 409, "conflict")
    assert world.rows(DECISIONS) == []
    time.sleep(0.4)
    world.decided([item_id], "marked_sensitive")


# -- decisions -----------------------------------------------------------------------------


def test_a_bulk_decision_settles_reports_and_bank_reviews_and_audits_each_item(
    world: World,
) -> None:
    first, second = world.item("File:A.jpg"), world.item("File:B.jpg")
    untouched = world.item("File:C.jpg")
    banked = bank_review_item(world)
    world.reported(first, "sensitive")
    world.reported(first, "other")
    world.reported(second, "copyright")
    world.reported(untouched, "sensitive")
    assert world.queue()["total"] == 4

    before = datetime.now(UTC)
    decision = world.decided(
        [second, banked, first, second], "rejected_reports", notes="  Nothing wrong here  "
    )
    assert set(decision) == {"id", "action", "reviewer", "notes", "media_ids", "created_at"}
    assert decision["action"] == "rejected_reports" and decision["reviewer"] == "reviewer-1"
    assert decision["notes"] == "Nothing wrong here"
    assert decision["media_ids"] == sorted([first, second, banked])
    created = datetime.fromisoformat(decision["created_at"])
    assert before - timedelta(seconds=5) <= created <= datetime.now(UTC) + timedelta(seconds=5)

    # The decided items leave the queue; the untouched one stays.
    assert world.queued_ids() == [untouched]
    reports = {row.item_id: row for row in world.rows(REPORTS) if row.item_id != first}
    assert reports[untouched].status == "pending" and reports[untouched].decision_id is None
    settled = world.rows(REPORTS, REPORTS.c.item_id.in_([first, second]))
    assert len(settled) == 3
    for row in settled:
        assert (row.status, row.decision_id) == ("rejected_reports", decision["id"])
        assert row.decided_at is not None
    [review] = world.service.store.items.actions(item_id=banked)
    assert (review.action, review.status) == ("review", "done")
    assert str(decision["id"]) in (review.detail or "")
    # Nothing else changed on the items.
    for item_id in (first, second, banked):
        stored = world.service.store.items.get(item_id)
        assert (stored.reported_sensitive, stored.deindexed) == (False, None)

    expected_settled = {first: 2, second: 1, banked: 0}
    for item_id in (first, second, banked):
        [entry] = [e for e in world.audit(item_id) if e["event"] == "review.decision"]
        assert (entry["actor"], entry["result"], entry["reason"]) == (
            "reviewer-1",
            "rejected_reports",
            "Nothing wrong here",
        )
        assert entry["details"] == {
            "decision_id": decision["id"],
            "items": 3,
            "reports_settled": expected_settled[item_id],
        }
    assert [e["event"] for e in world.audit(untouched)] == ["report.create"]

    assert world.decisions(media_id=first) == [decision]
    assert world.decisions(media_id=untouched) == []

    item = world.shown(first)
    assert set(item) == {"media", "reports", "decisions", "lock", "audit"}
    assert item["media"]["id"] == first and item["media"]["matched_terms"] == []
    assert [(r["reason"], r["status"]) for r in item["reports"]] == [
        ("sensitive", "rejected_reports"),
        ("other", "rejected_reports"),
    ]
    assert item["decisions"] == [decision] and item["lock"] is None
    assert [e["event"] for e in item["audit"]] == [
        "review.decision",
        "report.create",
        "report.create",
    ]
    banked_item = world.shown(banked)
    assert [(a["action"], a["status"]) for a in banked_item["media"]["actions"]] == [
        ("review", "done")
    ]
    assert [m["bank"] for m in banked_item["media"]["matches"]] == ["SPAM_LIST"]

    # A new report puts an item back in the queue.
    world.reported(first, "copyright")
    assert world.queued_ids() == [untouched, first]
    later = world.decided([first, untouched], "deduplicated_reports")
    assert world.queued_ids() == []
    assert world.decisions() == [later, decision]
    assert world.decisions(before_id=later["id"]) == [decision]
    assert world.decisions(limit=1) == [later]
    assert world.decisions(media_id=untouched) == [later]
    statuses = [row.status for row in world.rows(REPORTS, REPORTS.c.item_id == first)]
    assert statuses == ["rejected_reports", "rejected_reports", "deduplicated_reports"]


def test_decisions_change_search_at_once_and_reversals_restore(world: World) -> None:
    item_id = world.item("File:Boats.jpg")
    neighbour = world.item("File:Neighbour.jpg")
    world.reported(item_id, "sensitive")

    def detail(item: int) -> httpx.Response:
        return world.http.get(f"/v1/search/{item}")

    assert world.search() == {item_id: [], neighbour: []}
    assert detail(item_id).json()["sensitivity"] == []

    world.decided([item_id], "marked_sensitive")
    assert world.search() == {neighbour: []}
    assert world.search(include_sensitive=True) == {
        item_id: ["user_reported_sensitivity"],
        neighbour: [],
    }
    assert detail(item_id).json()["sensitivity"] == ["user_reported_sensitivity"]
    media = world.shown(item_id)["media"]
    assert media["sensitivity"] == ["user_reported_sensitivity"]
    [report] = world.rows(REPORTS)
    assert report.status == "marked_sensitive"

    # A reversal settles no report: one filed meanwhile still waits.
    world.reported(item_id, "copyright")
    world.decided([item_id], "reversed_mark_sensitive")
    assert world.search() == {item_id: [], neighbour: []}
    assert detail(item_id).json()["sensitivity"] == []
    assert [row.status for row in world.rows(REPORTS)] == ["marked_sensitive", "pending"]
    assert world.queued_ids() == [item_id]

    for action in ("deindexed_copyright", "deindexed_sensitive"):
        world.decided([item_id], action)
        assert world.search() == {neighbour: []}
        assert world.search(include_sensitive=True) == {neighbour: []}
        assert world.search(include_sensitive=True, q="") == {neighbour: []}
        assert_error(detail(item_id), 404, "not_found")
        item = world.shown(item_id)
        assert item["media"]["deindexed"] == action
        world.decided([item_id], "reversed_deindex")
        assert world.search() == {item_id: [], neighbour: []}
        assert detail(item_id).status_code == 200
    statuses = [row.status for row in world.rows(REPORTS)]
    assert statuses == ["marked_sensitive", "deindexed_copyright"]

    # Marked and deindexed at once: the reversal of one leaves the other in force.
    world.decided([item_id], "marked_sensitive")
    world.decided([item_id], "deindexed_sensitive")
    world.decided([item_id], "reversed_mark_sensitive")
    assert world.search(include_sensitive=True) == {neighbour: []}
    world.decided([item_id], "marked_sensitive")
    world.decided([item_id], "reversed_deindex")
    assert world.search() == {neighbour: []}
    assert world.search(include_sensitive=True) == {
        item_id: ["user_reported_sensitivity"],
        neighbour: [],
    }

    actions = [decision["action"] for decision in world.decisions(media_id=item_id)]
    assert actions == [
        "reversed_deindex",
        "marked_sensitive",
        "reversed_mark_sensitive",
        "deindexed_sensitive",
        "marked_sensitive",
        "reversed_deindex",
        "deindexed_sensitive",
        "reversed_deindex",
        "deindexed_copyright",
        "reversed_mark_sensitive",
        "marked_sensitive",
    ]
    audit = [e for e in world.audit(item_id) if e["event"] == "review.decision"]
    assert [e["result"] for e in audit] == actions
    assert world.audit(neighbour) == []


def test_bad_decisions_are_refused_and_nothing_is_written(world: World) -> None:
    first, second = world.item("File:A.jpg"), world.item("File:B.jpg")
    banked = bank_review_item(world)
    world.reported(first)
    world.reported(second, "copyright")
    url = "/v1/review/decisions"

    def post(body: Any) -> httpx.Response:
        return world.http.post(url, json=body, headers=world.reviewer)

    assert_error(
        world.http.post(url, json={"media_ids": [first], "action": "marked_sensitive"}),
        401,
        "unauthenticated",
    )
    assert_error(world.decide([first], "marked_sensitive", headers=world.client), 403, "forbidden")
    for raw in (b"{", b"", b"media_ids=1&action=marked_sensitive", b"[1, 2"):
        response = world.http.post(
            url, content=raw, headers={**world.reviewer, "Content-Type": "application/json"}
        )
        assert_error(response, 400, "invalid_input")
    for body in (
        {"media_ids": [first], "action": "delete_everything"},
        {"media_ids": [first], "action": "MARKED_SENSITIVE"},
        {"media_ids": [first]},
        {"action": "marked_sensitive"},
        {"media_ids": [], "action": "marked_sensitive"},
        {"media_ids": first, "action": "marked_sensitive"},
        {"media_ids": ["abc"], "action": "marked_sensitive"},
        {"media_ids": [first, 1.5], "action": "marked_sensitive"},
        {"media_ids": [first, None], "action": "marked_sensitive"},
        {"media_ids": [{"id": first}], "action": "marked_sensitive"},
        {"media_ids": list(range(1, 502)), "action": "marked_sensitive"},
        {"media_ids": [first], "action": "marked_sensitive", "notes": "n" * 2001},
        {"media_ids": [first], "action": ["marked_sensitive"]},
        [first],
    ):
        assert_error(post(body), 400, "invalid_input")

    detail = assert_error(
        world.decide([first, 404_404, second], "deindexed_sensitive"), 404, "not_found"
    )
    assert "404404" in detail
    assert_error(
        world.decide(list(range(1_000_000, 1_000_500)), "marked_sensitive"), 404, "not_found"
    )
    detail = assert_error(world.decide([first, second], "reversed_mark_sensitive"), 409, "conflict")
    assert str(first) in detail and str(second) in detail
    assert_error(world.decide([banked], "reversed_deindex"), 409, "conflict")

    def unchanged(decided: set[int]) -> None:
        """Only the decisions over ``decided`` were written; everything else waits as before."""
        assert {row.item_id for row in world.rows(DECISION_ITEMS)} == decided
        review_audit = world.rows(AUDIT_LOG, AUDIT_LOG.c.event == "review.decision")
        assert {row.subject_id for row in review_audit} == {str(item) for item in decided}
        waiting = {first, second, banked} - decided
        pending = world.rows(REPORTS, REPORTS.c.item_id.in_(waiting))
        assert {row.status for row in pending} <= {"pending"}
        assert {row.decision_id for row in pending} <= {None}
        assert [row.status for row in world.rows(ACTIONS)] == ["queued"]
        flags = world.rows(MEDIA_ITEMS, MEDIA_ITEMS.c.id.in_(waiting))
        assert {(row.reported_sensitive, row.deindexed) for row in flags} == {(False, None)}
        assert world.rows(REVIEW_LOCKS) == []

    unchanged(set())
    assert world.rows(DECISIONS) == []
    assert world.queued_ids() == [banked, first, second]

    # A reversal is all or nothing too: one item not deindexed refuses the lot.
    world.decided([first], "deindexed_sensitive")
    assert_error(world.decide([first, second], "reversed_deindex"), 409, "conflict")
    assert world.service.store.items.get(first).deindexed == "deindexed_sensitive"
    assert [row.action for row in world.rows(DECISIONS)] == ["deindexed_sensitive"]
    unchanged({first})
    world.decided([first], "reversed_deindex")
    assert [row.action for row in world.rows(DECISIONS)] == [
        "deindexed_sensitive",
        "reversed_deindex",
    ]
    unchanged({first})
    assert world.queued_ids() == [banked, second]

    # The largest bulk decision goes through (duplicates count once).
    world.decided([second] * 500, "deduplicated_reports")
    assert world.queued_ids() == [banked]


def test_review_routes_need_a_reviewer(world: World) -> None:
    item_id = world.item("File:A.jpg")
    world.reported(item_id)
    routes = [
        ("GET", "/v1/review/queue"),
        ("POST", "/v1/review/next"),
        ("GET", f"/v1/review/media/{item_id}"),
        ("POST", f"/v1/review/media/{item_id}/lock"),
        ("DELETE", f"/v1/review/media/{item_id}/lock"),
        ("GET", "/v1/review/decisions"),
    ]
    for method, path in routes:
        assert_error(world.http.request(method, path), 401, "unauthenticated")
        assert_error(world.http.request(method, path, headers=world.client), 403, "forbidden")
    assert world.http.get(f"/v1/review/media/{item_id}", headers=world.admin).status_code == 200
    assert_error(
        world.http.get("/v1/review/media/404404", headers=world.reviewer), 404, "not_found"
    )
    assert world.rows(REVIEW_LOCKS) == [] and world.rows(DECISIONS) == []


def test_the_limit_counts_each_reporter_of_a_token(make_world: Callable[..., World]) -> None:
    world = make_world(report_rate_limit=1)
    item_id = world.item("File:A.jpg")
    for person in ("hash-of-user-1", "hash-of-user-2"):
        body = {"reason": "sensitive", "reporter": person}
        first = world.http.post(f"/v1/media/{item_id}/report", json=body, headers=world.client)
        assert first.status_code == 201, first.text
        again = world.http.post(f"/v1/media/{item_id}/report", json=body, headers=world.client)
        assert again.status_code == 429
    rows = world.rows(REPORTS)
    assert sorted(row.reporter for row in rows) == [
        "token:client-1/hash-of-user-1",
        "token:client-1/hash-of-user-2",
    ]


def test_a_token_with_a_long_name_can_report(world: World) -> None:
    item_id = world.item("File:A.jpg")
    long_name = world.api.as_(world.service.create_token("c" * 100, "client")[0])
    body = {"reason": "sensitive", "reporter": "u" * 128}
    filed = world.http.post(f"/v1/media/{item_id}/report", json=body, headers=long_name)
    assert filed.status_code == 201, filed.text
    assert world.audit(item_id)[0]["actor"] == f"token:{'c' * 100}/{'u' * 128}"


def test_asking_for_the_next_item_again_skips_the_one_held(world: World) -> None:
    ids = [world.item(f"File:{n}.jpg") for n in range(3)]
    for item_id in ids:
        world.reported(item_id)
    first = world.claim(world.reviewer)
    second = world.claim(world.reviewer)
    assert [entry["media"]["id"] for entry in first] == [ids[0]]
    assert [entry["media"]["id"] for entry in second] == [ids[1]]
    # The skipped item was given back: the other reviewer gets it.
    assert [entry["media"]["id"] for entry in world.claim(world.reviewer2)] == [ids[0]]
