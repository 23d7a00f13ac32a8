"""The store on SQLite and PostgreSQL: migrations, scores, tokens, readiness."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mediaguard.errors import InvalidInputError, NotFoundError, NotReadyError
from mediaguard.store import ROLES, Store, StoredScore
from mediaguard.store.models import API_TOKENS, SCORES, metadata, outside_models

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def sha256(seed: object) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()


def sha1(seed: object) -> str:
    return hashlib.sha1(str(seed).encode()).hexdigest()


def make_score(seed: object = 0, **overrides: Any) -> StoredScore:
    fields: dict[str, Any] = {
        "sha256": sha256(seed),
        "sha1": sha1(seed),
        "model": "open_nsfw",
        "model_version": "open_nsfw/resnet50-1by2/864bb37b/exact",
        "score": 0.123456789012345,
        "width": 640,
        "height": 480,
        "media_format": "JPEG",
        "created_at": T0,
    }
    fields.update(overrides)
    return StoredScore(**fields)


# migrations


def test_upgrade_is_idempotent_and_is_current_flips(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.current_revision() is None
        assert not store.is_current()
        store.upgrade()
        assert store.is_current()
        revision = store.current_revision()
        assert revision is not None
        store.upgrade()
        assert store.current_revision() == revision
        assert store.is_current()
        assert {"scores", "api_tokens"} <= set(sa.inspect(store.engine).get_table_names())
    finally:
        store.close()


UPGRADE_ON_GO = """
import sys
from mediaguard.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.upgrade()
store.close()
"""


def test_concurrent_upgrades_wait_for_each_other(database_url: str) -> None:
    # Separate processes, as when several workers start at once on one database: each one
    # imports and connects first, then all are released together.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_ON_GO, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    store = Store(database_url)
    try:
        assert store.is_current()
    finally:
        store.close()


def test_threads_may_upgrade_at_once(database_url: str) -> None:
    stores = [Store(database_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(Store.upgrade, stores))
        assert all(store.is_current() for store in stores)
    finally:
        for store in stores:
            store.close()


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_object": lambda _o, name, type_, *_: not outside_models(name, type_)},
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_sqlite_connections_get_the_pragmas(make_store: Callable[..., Store]) -> None:
    store = make_store("sqlite")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# scores


def test_put_get_round_trip_with_aware_datetimes(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    score = make_score(created_at=T0.astimezone(paris))
    stored = store.scores.put(score)
    assert stored == score
    fetched = store.scores.get(score.sha256, score.model_version)
    assert fetched == score
    assert fetched is not None
    assert fetched.created_at.utcoffset() == timedelta(0)
    assert fetched.created_at.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert fetched.score == score.score
    assert store.scores.get(score.sha256, "other/version") is None
    assert store.scores.get(sha256("unknown"), score.model_version) is None
    assert store.scores.count() == 1


def test_put_twice_returns_the_first_row_unchanged(store: Store) -> None:
    first = store.scores.put(make_score(score=0.1))
    second = store.scores.put(make_score(score=0.9, width=1, created_at=T0 + timedelta(days=1)))
    assert second == first
    assert store.scores.get(first.sha256, first.model_version) == first
    assert store.scores.count() == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"sha256": "A" * 64},
        {"sha256": "a" * 63},
        {"sha1": "g" * 40},
        {"created_at": datetime(2024, 1, 1)},
        {"model_version": ""},
    ],
    ids=["upper-sha256", "short-sha256", "bad-sha1", "naive-datetime", "empty-version"],
)
def test_put_rejects_malformed_scores(store: Store, overrides: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        store.scores.put(make_score(**overrides))
    assert store.scores.count() == 0


def test_concurrent_puts_of_one_key_store_one_row(store: Store) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def put(index: int) -> StoredScore:
        barrier.wait()
        return store.scores.put(make_score(score=index / 10))

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(put, range(threads)))
    assert len(set(results)) == 1
    assert store.scores.count() == 1
    assert store.scores.get(results[0].sha256, results[0].model_version) == results[0]


def test_find_returns_all_model_versions_newest_first(store: Store) -> None:
    old = store.scores.put(make_score(model_version="v1", created_at=T0))
    new = store.scores.put(make_score(model_version="v2", created_at=T0 + timedelta(hours=1)))
    other = store.scores.put(make_score(seed=1, created_at=T0 + timedelta(hours=2)))

    assert store.scores.find(sha1=[sha1(0)]) == [new, old]
    assert store.scores.find(sha256=[sha256(0)]) == [new, old]
    # Both kinds at once, overlapping: each row once, newest first.
    assert store.scores.find(sha1=[sha1(0)], sha256=[sha256(0), sha256(1)]) == [other, new, old]
    assert store.scores.find(sha1=[sha1(0), sha1(0)]) == [new, old]
    assert store.scores.find() == []
    assert store.scores.find(sha1=[sha1("unknown")], sha256=[sha256("unknown")]) == []


def test_find_with_a_thousand_digests(store: Store) -> None:
    known = 600
    rows = [
        {**make_score(seed=i, created_at=T0 + timedelta(seconds=i)).__dict__} for i in range(known)
    ]
    with store.engine.begin() as connection:
        connection.execute(sa.insert(SCORES), rows)
    assert store.scores.count() == known

    seeds = range(1000)  # 600 stored, 400 unknown
    by_sha1 = store.scores.find(sha1=[sha1(i) for i in seeds])
    by_sha256 = store.scores.find(sha256=[sha256(i) for i in seeds])
    assert by_sha1 == by_sha256
    assert [score.sha256 for score in by_sha1] == [sha256(i) for i in reversed(range(known))]


# tokens


def test_token_is_shown_once_and_stored_as_a_hash(store: Store) -> None:
    plaintext, info = store.tokens.create("uploader", "client")
    assert plaintext.startswith("mg_")
    assert len(plaintext) > 40
    assert info.prefix == plaintext[3:11]
    assert (info.name, info.role) == ("uploader", "client")
    assert info.created_at.tzinfo is not None
    assert info.last_used_at is None
    assert info.revoked_at is None

    with store.engine.connect() as connection:
        raw = [tuple(row) for row in connection.execute(sa.select(API_TOKENS))]
    assert len(raw) == 1
    assert not any(plaintext in str(value) or plaintext[3:] in str(value) for value in raw[0])
    assert hashlib.sha256(plaintext.encode()).hexdigest() in raw[0]
    # Nothing in the listing gives the secret back.
    assert not any(plaintext in repr(token) for token in store.tokens.list())


def test_verify_accepts_the_token_and_refuses_others(store: Store) -> None:
    plaintext, info = store.tokens.create("reviewer-1", "reviewer")
    verified = store.tokens.verify(plaintext)
    assert verified is not None
    assert verified.id == info.id
    assert verified.role == "reviewer"
    assert verified.last_used_at is not None

    assert store.tokens.verify(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert store.tokens.verify("mg_" + "x" * 43) is None
    assert store.tokens.verify("") is None
    assert store.tokens.verify("mg_" + "x" * 10_000) is None

    revoked = store.tokens.revoke("reviewer-1")
    assert revoked.revoked_at is not None
    assert store.tokens.verify(plaintext) is None


def test_verify_writes_last_used_at_at_most_once_a_minute(store: Store) -> None:
    plaintext, info = store.tokens.create("hook", "client")
    first = store.tokens.verify(plaintext)
    assert first is not None
    assert first.last_used_at is not None
    second = store.tokens.verify(plaintext)
    assert second is not None
    assert second.last_used_at == first.last_used_at

    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(API_TOKENS).where(API_TOKENS.c.id == info.id).values(last_used_at=long_ago)
        )
    third = store.tokens.verify(plaintext)
    assert third is not None
    assert third.last_used_at is not None
    assert third.last_used_at > long_ago + timedelta(minutes=4)
    [listed] = store.tokens.list()
    assert listed.last_used_at == third.last_used_at


def test_duplicate_active_names_are_rejected(store: Store) -> None:
    store.tokens.create("ops", "admin")
    with pytest.raises(InvalidInputError, match="ops"):
        store.tokens.create("ops", "client")
    store.tokens.revoke("ops")
    # A revoked token's name can be used again.
    plaintext, _ = store.tokens.create("ops", "client")
    verified = store.tokens.verify(plaintext)
    assert verified is not None
    assert verified.role == "client"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_names_are_rejected(store: Store, name: str) -> None:
    with pytest.raises(InvalidInputError):
        store.tokens.create(name, "client")


def test_unknown_role_is_rejected(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="role"):
        store.tokens.create("root", "superuser")  # type: ignore[arg-type]
    assert store.tokens.list() == []


def test_revoke(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.tokens.revoke("nobody")
    store.tokens.create("a", "admin")
    revoked = store.tokens.revoke("a")
    assert revoked.revoked_at is not None
    assert store.tokens.revoke("a") == revoked  # revoking again changes nothing


def test_list_returns_every_token_oldest_first(store: Store) -> None:
    assert store.tokens.list() == []
    created = [store.tokens.create(f"token-{role}", role)[1] for role in ROLES]
    store.tokens.revoke("token-admin")
    listed = store.tokens.list()
    assert [token.id for token in listed] == [token.id for token in created]
    assert [token.role for token in listed] == list(ROLES)
    assert [token.revoked_at is not None for token in listed] == [True, False, False]


# readiness


def test_ping_answers(store: Store) -> None:
    store.ping()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/mediaguard?connect_timeout=1",
        "sqlite:////nonexistent/directory/mediaguard.db",
    ],
    ids=["postgresql-closed-port", "sqlite-missing-directory"],
)
def test_ping_raises_not_ready_when_the_database_does_not_answer(url: str) -> None:
    store = Store(url)
    try:
        with pytest.raises(NotReadyError) as caught:
            store.ping()
        assert "does not answer" in caught.value.message
        assert caught.value.code == "not_ready"
    finally:
        store.close()
