"""Banks and matching through the Service, on SQLite and PostgreSQL: real photos, real hashes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from mediaguard.errors import ConflictError, InvalidInputError, NotFoundError
from mediaguard.service import Service

from fixtures.images import REAL_PHOTOS, encode, photo, transformed_copies

BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, make_service: Callable[..., Service]) -> Service:
    service = make_service(request.param)
    service.start_index(wait=True)
    return service


def png_of(name: str) -> bytes:
    return encode(photo(name).convert("RGB"), "PNG", compress_level=1)


def bank_photo(service: Service, bank: str, name: str) -> int:
    hashes = service.hash_bytes(png_of(name))
    content, _ = service.banks.add_image(bank, hashes, metadata={"source": "test", "photo": name})
    assert content is not None
    return content.id


def test_transformed_copies_match_and_other_photos_do_not(service: Service) -> None:
    service.banks.create("KNOWN_BAD", category="ncii")
    content_ids = {name: bank_photo(service, "KNOWN_BAD", name) for name in PHOTOS}
    for name in PHOTOS:
        for transform, content in transformed_copies(photo(name)).items():
            hashes = service.hash_bytes(content)
            assert hashes.pdq is not None
            matches = service.match(hashes.signals(), pdq_quality=hashes.pdq.quality)
            found = {(m.content_id, m.signal_type) for m in matches}
            assert (content_ids[name], "pdq") in found, f"{name} {transform} did not match"
            others = {cid for cid, kind in found if kind == "pdq"} - {content_ids[name]}
            assert not others, f"{name} {transform} matched another photo"
            best = next(m for m in matches if m.signal_type == "pdq")
            assert best.bank == "KNOWN_BAD" and best.category == "ncii"
            assert best.metadata == {"source": "test", "photo": name}
            assert best.distance <= 31
    unbanked = [name for name in REAL_PHOTOS if name not in PHOTOS]
    for name in unbanked:
        hashes = service.hash_bytes(png_of(name))
        assert service.match(hashes.signals()) == [], name


def test_exact_digests_match_at_distance_zero(service: Service) -> None:
    service.banks.create("EXACT")
    content = png_of("coffee.png")
    hashes = service.hash_bytes(content)
    service.banks.add_content("EXACT", {"md5": hashes.md5})
    service.banks.create("BY_SHA1")
    service.banks.add_content("BY_SHA1", {"sha1": hashes.sha1_base36})  # MediaWiki's base 36
    matches = service.match({"md5": hashes.md5, "sha1": hashes.sha1, "sha256": hashes.sha256})
    assert {(m.bank, m.signal_type, m.distance) for m in matches} == {
        ("EXACT", "md5", 0),
        ("BY_SHA1", "sha1", 0),
    }


def test_per_bank_thresholds_are_honoured(service: Service) -> None:
    base = service.hash_bytes(png_of("chelsea.png")).pdq
    assert base is not None
    near = _flip(base.hex, 20)
    service.banks.create("STRICT", pdq_threshold=10)
    service.banks.create("LOOSE", pdq_threshold=31)
    service.banks.add_content("STRICT", {"pdq": base.hex})
    service.banks.add_content("LOOSE", {"pdq": base.hex})
    assert {m.bank for m in service.match({"pdq": near})} == {"LOOSE"}
    assert {m.bank for m in service.match({"pdq": base.hex})} == {"LOOSE", "STRICT"}
    service.banks.update("STRICT", {"pdq_threshold": 20})
    assert {m.bank for m in service.match({"pdq": near})} == {"LOOSE", "STRICT"}
    service.banks.update("LOOSE", {"pdq_threshold": 19})
    assert {m.bank for m in service.match({"pdq": near})} == {"STRICT"}
    far = _flip(base.hex, 40)
    service.banks.update("LOOSE", {"pdq_threshold": 63})
    assert {(m.bank, m.distance) for m in service.match({"pdq": far})} == {("LOOSE", 40)}


def test_disabled_banks_and_content_never_match(service: Service) -> None:
    service.banks.create("SWITCHED")
    hashes = service.hash_bytes(png_of("rocket.jpg"))
    content, _ = service.banks.add_content("SWITCHED", hashes.signals(), quality=100)
    assert content is not None
    assert service.match(hashes.signals())
    service.banks.update("SWITCHED", {"enabled": False})
    assert service.match(hashes.signals()) == []
    service.banks.update("SWITCHED", {"enabled": True})
    service.banks.set_content_enabled("SWITCHED", content.id, False)
    assert service.match(hashes.signals()) == []
    service.banks.set_content_enabled("SWITCHED", content.id, True)
    assert len(service.match(hashes.signals())) == 4  # pdq, md5, sha1, sha256
    service.banks.remove_content("SWITCHED", content.id)
    assert service.match(hashes.signals()) == []
    assert len(service.follower.index) == 0


def test_low_quality_hashes_are_stored_but_never_matched(service: Service) -> None:
    service.banks.create("FLAT")
    flat = encode(photo("coffee.png").convert("RGB").resize((64, 64)).point(lambda _: 128), "PNG")
    hashes = service.hash_bytes(flat)
    assert hashes.pdq is not None and hashes.pdq.quality < 50
    content, _ = service.banks.add_content(
        "FLAT", {"pdq": hashes.pdq.hex}, quality=hashes.pdq.quality
    )
    assert content is not None and content.signals == {"pdq": hashes.pdq.hex}
    assert service.match({"pdq": hashes.pdq.hex}) == []
    assert len(service.follower.index) == 0
    # ...and a low-quality query hash is not matched against a good banked one either.
    service.banks.add_content("FLAT", {"pdq": _flip(hashes.pdq.hex, 1)})
    assert service.match({"pdq": hashes.pdq.hex}, pdq_quality=hashes.pdq.quality) == []
    assert service.match({"pdq": hashes.pdq.hex})


def test_bank_names_categories_and_duplicates(service: Service) -> None:
    for bad in ("lower", "1ST", "WITH-DASH", "", "A" * 101):
        with pytest.raises(InvalidInputError):
            service.banks.create(bad)
    with pytest.raises(InvalidInputError, match="category"):
        service.banks.create("GOOD", category="spam")
    with pytest.raises(InvalidInputError, match="pdq_threshold"):
        service.banks.create("GOOD", pdq_threshold=64)
    with pytest.raises(InvalidInputError, match="action"):
        service.banks.create("GOOD", actions=["explode"])
    service.banks.create("_GOOD_1", category="terrorism")
    with pytest.raises(ConflictError):
        service.banks.create("_GOOD_1")
    with pytest.raises(NotFoundError):
        service.banks.get("MISSING")
    with pytest.raises(InvalidInputError, match="pdq hash"):
        service.banks.add_content("_GOOD_1", {"pdq": "abc"})
    first, result = service.banks.add_content("_GOOD_1", {"md5": "A" * 32})
    assert first is not None and first.signals == {"md5": "a" * 32}
    again, result = service.banks.add_content("_GOOD_1", {"md5": "a" * 32})
    assert again is None and result.duplicates == 1
    assert service.banks.counts("_GOOD_1") == {"md5": 1}
    audit = service.store.audit.list(subject_type="bank", subject_id="_GOOD_1")
    assert [entry.event for entry in audit] == ["bank.content.add", "bank.create"]


def test_a_second_process_sees_changes_within_a_second(
    service: Service, make_service: Callable[..., Service]
) -> None:
    other = make_service(database_url=service.settings.database_url)
    other.start_index(wait=True)
    service.banks.create("SHARED")
    hashes = service.hash_bytes(png_of("astronaut.png"))
    assert hashes.pdq is not None
    assert other.match({"pdq": hashes.pdq.hex}) == []
    started = time.monotonic()
    content, _ = service.banks.add_content("SHARED", {"pdq": hashes.pdq.hex}, quality=100)
    assert content is not None
    assert _within(1.0, lambda: bool(other.match({"pdq": hashes.pdq.hex})))  # type: ignore[union-attr]
    added_after = time.monotonic() - started
    service.banks.remove_content("SHARED", content.id)
    assert other.match({"pdq": hashes.pdq.hex}) == []  # the database join hides it at once
    assert _within(1.0, lambda: len(other.follower.index) == 0)
    assert added_after < 1.0


def test_bank_delete_removes_every_hash_from_the_index(service: Service) -> None:
    service.banks.create("DOOMED")
    service.banks.create("KEPT")
    for name in PHOTOS[:3]:
        bank_photo(service, "DOOMED", name)
    kept = bank_photo(service, "KEPT", PHOTOS[3])
    assert len(service.follower.index) == 4
    service.banks.delete("DOOMED")
    assert len(service.follower.index) == 1
    hashes = service.hash_bytes(png_of(PHOTOS[3]))
    assert [m.content_id for m in service.match(hashes.signals()) if m.signal_type == "pdq"] == [
        kept
    ]


def test_concurrent_adds_of_one_hash_store_it_once(service: Service) -> None:
    service.banks.create("RACE")
    errors: list[BaseException] = []

    def add() -> None:
        try:
            service.banks.add_content("RACE", {"sha256": "ab" * 32})
        except BaseException as exc:  # a lost race may surface as a database error
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.banks.counts("RACE") == {"sha256": 1}
    assert len(errors) <= 3


def test_index_loads_existing_hashes_at_start(
    service: Service, make_service: Callable[..., Service]
) -> None:
    service.banks.create("PRELOADED")
    for name in PHOTOS:
        bank_photo(service, "PRELOADED", name)
    later = make_service(database_url=service.settings.database_url)
    assert not later.index_status().ready
    later.start_index(wait=True)
    status = later.index_status()
    assert status.ready and status.size == len(PHOTOS) and status.max_threshold == 31
    hashes = later.hash_bytes(png_of("coffee.png"))
    assert any(m.signal_type == "pdq" for m in later.match(hashes.signals()))


def _flip(hex_hash: str, bits: int) -> str:
    value = int(hex_hash, 16)
    for bit in range(bits):
        value ^= 1 << (bit * 7 % 256)
    return f"{value:064x}"


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.mark.postgres
def test_a_change_committed_late_with_an_older_number_is_not_missed(
    make_service: Callable[..., Service],
) -> None:
    """PostgreSQL hands out sequence numbers at insert time and commits in any order: the
    follower must wait for the gap to fill instead of skipping past it."""
    import sqlalchemy as sa

    from mediaguard.store.db import utcnow
    from mediaguard.store.models import BANK_CHANGES, BANK_CONTENT, BANK_SIGNALS

    service = make_service("postgresql")
    service.start_index(wait=True)
    slow = service.banks.create("SLOW")
    service.banks.create("FAST")
    late_hash, fast_hash = _flip("0" * 64, 50), _flip("f" * 64, 50)
    now = utcnow()
    with service.store.engine.connect() as connection:
        transaction = connection.begin()
        content_id = connection.execute(
            sa.insert(BANK_CONTENT)
            .values(
                bank_id=slow.id,
                metadata={},
                enabled=True,
                source="api",
                created_at=now,
                updated_at=now,
            )
            .returning(BANK_CONTENT.c.id)
        ).scalar_one()
        signal_id = connection.execute(
            sa.insert(BANK_SIGNALS)
            .values(
                content_id=content_id,
                bank_id=slow.id,
                signal_type="pdq",
                value=late_hash,
                created_at=now,
            )
            .returning(BANK_SIGNALS.c.id)
        ).scalar_one()
        connection.execute(
            sa.insert(BANK_CHANGES).values(
                bank_id=slow.id, first_signal_id=signal_id, last_signal_id=signal_id, created_at=now
            )
        )
        # Meanwhile another change takes a later number and commits first.
        service.banks.add_content("FAST", {"pdq": fast_hash})
        assert service.match({"pdq": fast_hash})
        transaction.commit()
    assert _within(1.0, lambda: bool(service.match({"pdq": late_hash})))


def test_exchange_batches_replace_records_and_follow_removals(service: Service) -> None:
    """What NCMEC-style exchanges send: records keyed by an id, replaced whole or deleted."""
    from mediaguard.banks.admin import FetchTotals
    from mediaguard.banks.exchanges import FetchBatch, HashUpdate

    service.banks.create("FEED", category="child_protection")
    totals = FetchTotals()
    first = FetchBatch(
        updates=[
            HashUpdate("pdq", "a" * 64, {"classification": "A1"}, source_id="esp-1"),
            HashUpdate("md5", "b" * 32, {"classification": "A1"}, source_id="esp-1"),
            HashUpdate("pdq", "c" * 64, {"classification": "B1"}, source_id="esp-2"),
            HashUpdate("sha1", "d" * 40, {}),
        ],
        checkpoint="{}",
    )
    service.banks.apply_batch("FEED", "ncmec", first, totals)
    assert service.banks.counts("FEED") == {"pdq": 2, "md5": 1, "sha1": 1}
    [record] = [c for c in service.banks.list_content("FEED") if "md5" in c.signals]
    assert record.signals == {"pdq": "a" * 64, "md5": "b" * 32}
    # esp-1 comes again with one hash only, esp-2 is deleted, the plain hash is withdrawn.
    second = FetchBatch(
        updates=[
            HashUpdate("pdq", "e" * 64, {"classification": "A2"}, source_id="esp-1"),
            HashUpdate("sha1", "d" * 40, None),
        ],
        checkpoint="{}",
        removed_source_ids=["esp-2"],
    )
    service.banks.apply_batch("FEED", "ncmec", second, totals)
    assert service.banks.counts("FEED") == {"pdq": 1}
    [remaining] = service.banks.list_content("FEED")
    assert remaining.signals == {"pdq": "e" * 64} and remaining.metadata == {"classification": "A2"}
    assert service.match({"pdq": "a" * 64}) == [] and service.match({"pdq": "c" * 64}) == []
    assert [m.content_id for m in service.match({"pdq": "e" * 64})] == [remaining.id]
    assert (totals.added, totals.removed) == (5, 4)
