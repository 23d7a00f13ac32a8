"""Banks, their content and hashes, and the change feed that keeps PDQ indexes current.

Every write that adds or removes PDQ hashes also appends the affected signal-id ranges to
``bank_changes`` in the same transaction, so a process following the feed can never miss one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mediaguard.errors import ConflictError, NotFoundError
from mediaguard.store.db import reader, utcnow
from mediaguard.store.models import BANK_CHANGES, BANK_CONTENT, BANK_SIGNALS, BANKS

MIN_PDQ_QUALITY = 50
_CHUNK = 1000
# Signal ids closer than this share one change row; a follower re-reads the whole range.
_RANGE_GAP = 1000
_RANGE_MAX = 100_000

_BANK_COLUMNS = tuple(BANKS.c)


@dataclass(frozen=True)
class BankInfo:
    id: int
    name: str
    category: str
    pdq_threshold: int
    enabled: bool
    actions: tuple[str, ...] | None  # None: the category's default policy
    description: str | None
    exchange: str | None
    exchange_config: dict[str, Any] | None
    exchange_checkpoint: str | None
    fetched_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewSignal:
    signal_type: str
    value: str  # normalised
    quality: int | None = None


@dataclass(frozen=True)
class NewContent:
    signals: Sequence[NewSignal]
    note: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    media_url: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class ContentInfo:
    id: int
    bank: str
    note: str | None
    metadata: dict[str, Any]
    enabled: bool
    source: str
    media_url: str | None
    created_at: datetime
    updated_at: datetime
    signals: dict[str, str]


@dataclass(frozen=True)
class SignalHit:
    """A banked hash that is live: its bank and its content are enabled."""

    signal_id: int
    signal_type: str
    value: str
    content_id: int
    bank_id: int
    bank: str
    category: str
    pdq_threshold: int
    metadata: dict[str, Any]
    note: str | None


@dataclass(frozen=True)
class Change:
    seq: int
    first_signal_id: int
    last_signal_id: int


@dataclass(frozen=True)
class AddResult:
    added: int
    duplicates: int


def _bank_from_row(row: Any) -> BankInfo:
    values = row._mapping
    actions = values["actions"]
    return BankInfo(
        id=values["id"],
        name=values["name"],
        category=values["category"],
        pdq_threshold=values["pdq_threshold"],
        enabled=bool(values["enabled"]),
        actions=None if actions is None else tuple(a for a in actions.split(",") if a),
        description=values["description"],
        exchange=values["exchange"],
        exchange_config=values["exchange_config"],
        exchange_checkpoint=values["exchange_checkpoint"],
        fetched_at=values["fetched_at"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def _fresh(
    contents: Sequence[NewContent], known: set[tuple[str, str]]
) -> tuple[list[tuple[NewContent, list[NewSignal]]], int]:
    """Each content with its hashes not yet in the bank (nor earlier in the batch), and how
    many were dropped as duplicates; contents left with none are dropped."""
    kept: list[tuple[NewContent, list[NewSignal]]] = []
    duplicates = 0
    for content in contents:
        fresh = []
        for signal in content.signals:
            key = (signal.signal_type, signal.value)
            if key in known:
                duplicates += 1
                continue
            known.add(key)
            fresh.append(signal)
        if fresh:
            kept.append((content, fresh))
    return kept, duplicates


def _by_hash(
    bank_id: int, pairs: Iterable[tuple[str, str]], columns: Sequence[sa.ColumnElement[Any]]
) -> Iterator[sa.Select[Any]]:
    """Selects of ``columns`` for a bank's hashes among ``pairs`` (signal_type, value): one
    per type and chunk, each an index range scan (a row-value IN is not, on PostgreSQL)."""
    by_type: dict[str, list[str]] = {}
    for signal_type, value in pairs:
        by_type.setdefault(signal_type, []).append(value)
    for signal_type, values in by_type.items():
        for start in range(0, len(values), _CHUNK):
            yield sa.select(*columns).where(
                BANK_SIGNALS.c.bank_id == bank_id,
                BANK_SIGNALS.c.signal_type == signal_type,
                BANK_SIGNALS.c.value.in_(values[start : start + _CHUNK]),
            )


def _allocate_ids(connection: sa.Connection, table: sa.Table, count: int) -> list[int]:
    """``count`` primary keys for ``table``, reserved for this transaction.

    PostgreSQL draws them from the column's sequence; SQLite continues after the largest id,
    which is safe because the caller holds the database's write lock (``_locked_bank``).
    """
    if count == 0:
        return []
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return [int(row[0]) for row in rows]
    start = int(connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
    return list(range(start, start + count))


def _hit(row: Sequence[Any]) -> SignalHit:
    return SignalHit(*row)


def signal_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids grouped into few (first, last) ranges: runs with small gaps, bounded length."""
    ranges: list[tuple[int, int]] = []
    for signal_id in sorted(set(ids)):
        if ranges:
            first, last = ranges[-1]
            if signal_id - last <= _RANGE_GAP and signal_id - first < _RANGE_MAX:
                ranges[-1] = (first, signal_id)
                continue
        ranges.append((signal_id, signal_id))
    return ranges


_HIT_COLUMNS = (
    BANK_SIGNALS.c.id,
    BANK_SIGNALS.c.signal_type,
    BANK_SIGNALS.c.value,
    BANK_CONTENT.c.id,
    BANKS.c.id,
    BANKS.c.name,
    BANKS.c.category,
    BANKS.c.pdq_threshold,
    BANK_CONTENT.c.metadata,
    BANK_CONTENT.c.note,
)
_LIVE = (
    sa.select(*_HIT_COLUMNS)
    .select_from(
        BANK_SIGNALS.join(BANK_CONTENT, BANK_CONTENT.c.id == BANK_SIGNALS.c.content_id).join(
            BANKS, BANKS.c.id == BANK_SIGNALS.c.bank_id
        )
    )
    .where(BANKS.c.enabled.is_(True), BANK_CONTENT.c.enabled.is_(True))
)
_MATCHABLE_PDQ = sa.and_(
    BANK_SIGNALS.c.signal_type == "pdq",
    sa.or_(BANK_SIGNALS.c.quality.is_(None), BANK_SIGNALS.c.quality >= MIN_PDQ_QUALITY),
)


class BankRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    # banks

    def create(
        self,
        *,
        name: str,
        category: str,
        pdq_threshold: int,
        enabled: bool = True,
        actions: Sequence[str] | None = None,
        description: str | None = None,
        exchange: str | None = None,
        exchange_config: Mapping[str, Any] | None = None,
    ) -> BankInfo:
        now = utcnow()
        values = {
            "name": name,
            "category": category,
            "pdq_threshold": pdq_threshold,
            "enabled": enabled,
            "actions": None if actions is None else ",".join(actions),
            "description": description,
            "exchange": exchange,
            "exchange_config": None if exchange_config is None else dict(exchange_config),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._engine.begin() as connection:
                row = connection.execute(
                    sa.insert(BANKS).values(values).returning(*_BANK_COLUMNS)
                ).one()
        except sa.exc.IntegrityError:
            raise ConflictError(f"bank {name!r} already exists") from None
        return _bank_from_row(row)

    def get(self, name: str) -> BankInfo:
        with self._reader.connect() as connection:
            row = connection.execute(sa.select(*_BANK_COLUMNS).where(BANKS.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no bank named {name!r}")
        return _bank_from_row(row)

    def all(self) -> list[BankInfo]:
        with self._reader.connect() as connection:
            rows = connection.execute(sa.select(*_BANK_COLUMNS).order_by(BANKS.c.name)).all()
        return [_bank_from_row(row) for row in rows]

    def update(self, name: str, changes: Mapping[str, Any]) -> BankInfo:
        """Change any of: name, category, pdq_threshold, enabled, actions, description,
        exchange, exchange_config."""
        values = dict(changes)
        if "actions" in values and values["actions"] is not None:
            values["actions"] = ",".join(values["actions"])
        values["updated_at"] = utcnow()
        try:
            with self._engine.begin() as connection:
                row = connection.execute(
                    sa.update(BANKS)
                    .where(BANKS.c.name == name)
                    .values(values)
                    .returning(*_BANK_COLUMNS)
                ).first()
        except sa.exc.IntegrityError:
            raise ConflictError(f"bank {changes.get('name')!r} already exists") from None
        if row is None:
            raise NotFoundError(f"no bank named {name!r}")
        return _bank_from_row(row)

    def delete(self, name: str) -> BankInfo:
        with self._engine.begin() as connection:
            bank = self._locked_bank(connection, name)
            pdq_ids = connection.execute(
                sa.select(BANK_SIGNALS.c.id).where(
                    BANK_SIGNALS.c.bank_id == bank.id, BANK_SIGNALS.c.signal_type == "pdq"
                )
            ).scalars()
            self._log_changes(connection, bank.id, pdq_ids)
            connection.execute(sa.delete(BANKS).where(BANKS.c.id == bank.id))
        return bank

    def save_checkpoint(self, name: str, checkpoint: str | None) -> None:
        now = utcnow()
        with self._engine.begin() as connection:
            connection.execute(
                sa.update(BANKS)
                .where(BANKS.c.name == name)
                .values(exchange_checkpoint=checkpoint, fetched_at=now, updated_at=now)
            )

    def claim_refresh(self, name: str, cutoff: datetime) -> bool:
        """Take a bank's scheduled exchange fetch: true for the one process that moved its
        ``fetched_at`` past ``cutoff``, so workers on many machines fetch it once."""
        now = utcnow()
        with self._engine.begin() as connection:
            return bool(
                connection.execute(
                    sa.update(BANKS)
                    .where(
                        BANKS.c.name == name,
                        BANKS.c.exchange.is_not(None),
                        BANKS.c.fetched_at.is_(None) | (BANKS.c.fetched_at < cutoff),
                    )
                    .values(fetched_at=now)
                ).rowcount
            )

    def thresholds(self) -> dict[int, int]:
        """PDQ threshold of every enabled bank, by bank id."""
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(BANKS.c.id, BANKS.c.pdq_threshold).where(BANKS.c.enabled.is_(True))
            ).all()
        return {row[0]: row[1] for row in rows}

    def counts(self, bank_id: int) -> dict[str, int]:
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(BANK_SIGNALS.c.signal_type, sa.func.count())
                .where(BANK_SIGNALS.c.bank_id == bank_id)
                .group_by(BANK_SIGNALS.c.signal_type)
            ).all()
        return {row[0]: int(row[1]) for row in rows}

    # content

    def add_content(
        self, bank_name: str, contents: Sequence[NewContent], *, source: str
    ) -> tuple[list[ContentInfo], AddResult]:
        """Add each content with its signals; a hash already in the bank is skipped, and a
        content left with no new hash is not created. One transaction for the whole batch."""
        now = utcnow()
        with self._engine.begin() as connection:
            bank = self._locked_bank(connection, bank_name)
            kept, duplicates = _fresh(contents, self._known(connection, bank.id, contents))
            if not kept:
                return [], AddResult(added=0, duplicates=duplicates)
            # Ids are taken up front so both tables load with plain multi-row inserts.
            content_ids = _allocate_ids(connection, BANK_CONTENT, len(kept))
            signal_ids = _allocate_ids(connection, BANK_SIGNALS, sum(len(f) for _, f in kept))
            content_rows: list[dict[str, Any]] = []
            signal_rows: list[dict[str, Any]] = []
            created: list[ContentInfo] = []
            next_signal = iter(signal_ids)
            for content_id, (content, fresh) in zip(content_ids, kept, strict=True):
                content_rows.append(
                    {
                        "id": content_id,
                        "bank_id": bank.id,
                        "note": content.note,
                        "metadata": dict(content.metadata),
                        "enabled": True,
                        "source": source,
                        "external_id": content.external_id,
                        "media_url": content.media_url,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                for signal in fresh:
                    signal_rows.append(
                        {
                            "id": next(next_signal),
                            "content_id": content_id,
                            "bank_id": bank.id,
                            "signal_type": signal.signal_type,
                            "value": signal.value,
                            "quality": signal.quality,
                            "created_at": now,
                        }
                    )
                created.append(
                    ContentInfo(
                        id=content_id,
                        bank=bank.name,
                        note=content.note,
                        metadata=dict(content.metadata),
                        enabled=True,
                        source=source,
                        media_url=content.media_url,
                        created_at=now,
                        updated_at=now,
                        signals={signal.signal_type: signal.value for signal in fresh},
                    )
                )
            connection.execute(sa.insert(BANK_CONTENT), content_rows)
            connection.execute(sa.insert(BANK_SIGNALS), signal_rows)
            pdq_ids = [row["id"] for row in signal_rows if row["signal_type"] == "pdq"]
            self._log_changes(connection, bank.id, pdq_ids)
        return created, AddResult(added=len(signal_rows), duplicates=duplicates)

    def remove_signals(self, bank_name: str, signals: Iterable[tuple[str, str]]) -> int:
        """Remove hashes (signal_type, value) from a bank, with their content when it is left
        with none. Unknown hashes are ignored. Returns how many hashes were removed."""
        removed = 0
        with self._engine.begin() as connection:
            bank = self._locked_bank(connection, bank_name)
            columns = (BANK_SIGNALS.c.id, BANK_SIGNALS.c.content_id, BANK_SIGNALS.c.signal_type)
            for query in _by_hash(bank.id, signals, columns):
                rows = connection.execute(query).all()
                if not rows:
                    continue
                ids = [row[0] for row in rows]
                connection.execute(sa.delete(BANK_SIGNALS).where(BANK_SIGNALS.c.id.in_(ids)))
                content_ids = {row[1] for row in rows}
                still_used = set(
                    connection.execute(
                        sa.select(BANK_SIGNALS.c.content_id).where(
                            BANK_SIGNALS.c.content_id.in_(content_ids)
                        )
                    ).scalars()
                )
                empty = content_ids - still_used
                if empty:
                    connection.execute(sa.delete(BANK_CONTENT).where(BANK_CONTENT.c.id.in_(empty)))
                self._log_changes(connection, bank.id, [r[0] for r in rows if r[2] == "pdq"])
                removed += len(rows)
        return removed

    def remove_external(self, bank_name: str, external_ids: Iterable[str]) -> int:
        """Delete the contents an exchange knows by these ids; returns how many hashes went."""
        wanted = list(dict.fromkeys(external_ids))
        removed = 0
        with self._engine.begin() as connection:
            bank = self._locked_bank(connection, bank_name)
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                select_ids = (
                    sa.select(BANK_CONTENT.c.id)
                    .where(BANK_CONTENT.c.bank_id == bank.id)
                    .where(BANK_CONTENT.c.external_id.in_(chunk))
                )
                rows = connection.execute(
                    sa.select(BANK_SIGNALS.c.id, BANK_SIGNALS.c.signal_type).where(
                        BANK_SIGNALS.c.content_id.in_(select_ids)
                    )
                ).all()
                connection.execute(sa.delete(BANK_CONTENT).where(BANK_CONTENT.c.id.in_(select_ids)))
                self._log_changes(connection, bank.id, [r[0] for r in rows if r[1] == "pdq"])
                removed += len(rows)
        return removed

    def iter_source(self, bank_name: str, source: str) -> Iterator[tuple[str, str]]:
        """(signal_type, value) of every hash a source (e.g. an exchange) put in the bank."""
        bank = self.get(bank_name)
        last = 0
        while True:
            with self._reader.connect() as connection:
                rows = connection.execute(
                    sa.select(BANK_SIGNALS.c.id, BANK_SIGNALS.c.signal_type, BANK_SIGNALS.c.value)
                    .join(BANK_CONTENT, BANK_CONTENT.c.id == BANK_SIGNALS.c.content_id)
                    .where(
                        BANK_SIGNALS.c.bank_id == bank.id,
                        BANK_CONTENT.c.source == source,
                        BANK_SIGNALS.c.id > last,
                    )
                    .order_by(BANK_SIGNALS.c.id)
                    .limit(10_000)
                ).all()
            if not rows:
                return
            for row in rows:
                yield row[1], row[2]
            last = rows[-1][0]

    def remove_content(self, bank_name: str, content_id: int) -> int:
        """Delete one content and its hashes; returns how many hashes went with it."""
        with self._engine.begin() as connection:
            bank = self._locked_bank(connection, bank_name)
            rows = connection.execute(
                sa.select(BANK_SIGNALS.c.id, BANK_SIGNALS.c.signal_type).where(
                    BANK_SIGNALS.c.content_id == content_id, BANK_SIGNALS.c.bank_id == bank.id
                )
            ).all()
            deleted = connection.execute(
                sa.delete(BANK_CONTENT).where(
                    BANK_CONTENT.c.id == content_id, BANK_CONTENT.c.bank_id == bank.id
                )
            ).rowcount
            if not deleted:
                raise NotFoundError(f"bank {bank_name!r} has no content {content_id}")
            self._log_changes(connection, bank.id, [row[0] for row in rows if row[1] == "pdq"])
        return len(rows)

    def set_content_enabled(self, bank_name: str, content_id: int, enabled: bool) -> ContentInfo:
        bank = self.get(bank_name)
        with self._engine.begin() as connection:
            updated = connection.execute(
                sa.update(BANK_CONTENT)
                .where(BANK_CONTENT.c.id == content_id, BANK_CONTENT.c.bank_id == bank.id)
                .values(enabled=enabled, updated_at=utcnow())
            ).rowcount
        if not updated:
            raise NotFoundError(f"bank {bank_name!r} has no content {content_id}")
        return self.get_content(bank_name, content_id)

    def get_content(self, bank_name: str, content_id: int) -> ContentInfo:
        found = self.list_content(bank_name, content_ids=[content_id])
        if not found:
            raise NotFoundError(f"bank {bank_name!r} has no content {content_id}")
        return found[0]

    def list_content(
        self,
        bank_name: str,
        *,
        after_id: int = 0,
        limit: int = 100,
        content_ids: Sequence[int] | None = None,
    ) -> list[ContentInfo]:
        bank = self.get(bank_name)
        query = (
            sa.select(*BANK_CONTENT.c)
            .where(BANK_CONTENT.c.bank_id == bank.id, BANK_CONTENT.c.id > after_id)
            .order_by(BANK_CONTENT.c.id)
            .limit(limit)
        )
        if content_ids is not None:
            query = query.where(BANK_CONTENT.c.id.in_(content_ids))
        with self._reader.connect() as connection:
            rows = connection.execute(query).all()
            ids = [row.id for row in rows]
            signals: dict[int, dict[str, str]] = {}
            if ids:
                for content_id, signal_type, value in connection.execute(
                    sa.select(
                        BANK_SIGNALS.c.content_id, BANK_SIGNALS.c.signal_type, BANK_SIGNALS.c.value
                    ).where(BANK_SIGNALS.c.content_id.in_(ids))
                ):
                    signals.setdefault(content_id, {})[signal_type] = value
        return [
            ContentInfo(
                id=row.id,
                bank=bank.name,
                note=row.note,
                metadata=row.metadata,
                enabled=bool(row.enabled),
                source=row.source,
                media_url=row.media_url,
                created_at=row.created_at,
                updated_at=row.updated_at,
                signals=signals.get(row.id, {}),
            )
            for row in rows
        ]

    def iter_signals(
        self, bank_name: str, *, batch: int = 5000
    ) -> Iterator[tuple[str, str, str | None, dict[str, Any]]]:
        """(signal_type, value, note, metadata) of every hash in a bank, in id order."""
        bank = self.get(bank_name)
        last = 0
        while True:
            with self._reader.connect() as connection:
                rows = connection.execute(
                    sa.select(
                        BANK_SIGNALS.c.id,
                        BANK_SIGNALS.c.signal_type,
                        BANK_SIGNALS.c.value,
                        BANK_CONTENT.c.note,
                        BANK_CONTENT.c.metadata,
                    )
                    .join(BANK_CONTENT, BANK_CONTENT.c.id == BANK_SIGNALS.c.content_id)
                    .where(BANK_SIGNALS.c.bank_id == bank.id, BANK_SIGNALS.c.id > last)
                    .order_by(BANK_SIGNALS.c.id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield row[1], row[2], row[3], row[4]
            last = rows[-1][0]

    # matching

    def live_exact(self, signals: Mapping[str, str]) -> list[SignalHit]:
        """Live banked hashes equal to any of ``signals`` (signal_type -> value)."""
        if not signals:
            return []
        condition = sa.or_(
            *(
                sa.and_(BANK_SIGNALS.c.signal_type == kind, BANK_SIGNALS.c.value == value)
                for kind, value in signals.items()
            )
        )
        with self._reader.connect() as connection:
            rows = connection.execute(_LIVE.where(condition)).all()
        return [_hit(row) for row in rows]

    def live_signals(self, signal_ids: Sequence[int]) -> list[SignalHit]:
        if not signal_ids:
            return []
        hits: list[SignalHit] = []
        with self._reader.connect() as connection:
            for start in range(0, len(signal_ids), _CHUNK):
                chunk = list(signal_ids[start : start + _CHUNK])
                rows = connection.execute(_LIVE.where(BANK_SIGNALS.c.id.in_(chunk))).all()
                hits.extend(_hit(row) for row in rows)
        return hits

    # the change feed

    def last_change(self, *, before: datetime | None = None) -> int:
        """The newest change's number (of those created before ``before``, when given)."""
        query = sa.select(sa.func.max(BANK_CHANGES.c.seq))
        if before is not None:
            query = query.where(BANK_CHANGES.c.created_at < before)
        with self._reader.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def changes_after(self, seq: int, limit: int = 1000) -> list[Change]:
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(
                    BANK_CHANGES.c.seq,
                    BANK_CHANGES.c.first_signal_id,
                    BANK_CHANGES.c.last_signal_id,
                )
                .where(BANK_CHANGES.c.seq > seq)
                .order_by(BANK_CHANGES.c.seq)
                .limit(limit)
            ).all()
        return [Change(*row) for row in rows]

    def matchable_pdq(
        self, *, first: int = 0, last: int | None = None, batch: int = 100_000
    ) -> Iterator[list[tuple[int, str]]]:
        """(signal id, hash) of every PDQ hash good enough to match, in batches by id.

        Batches are primary-key ranges, so each is one range scan whatever the planner thinks
        of the other conditions (an index on signal_type would sort the whole table per batch).
        """
        if last is None:
            with self._reader.connect() as connection:
                last = int(
                    connection.execute(sa.select(sa.func.max(BANK_SIGNALS.c.id))).scalar() or 0
                )
        low = first
        while low <= last:
            high = min(low + batch - 1, last)
            query = (
                sa.select(BANK_SIGNALS.c.id, BANK_SIGNALS.c.value)
                .where(BANK_SIGNALS.c.id.between(low, high), _MATCHABLE_PDQ)
                .order_by(BANK_SIGNALS.c.id)
            )
            with self._reader.connect() as connection:
                rows = [(int(row[0]), str(row[1])) for row in connection.execute(query)]
            if rows:
                yield rows
            low = high + 1

    def analyze(self) -> None:
        """Refresh PostgreSQL's statistics of the bank tables. A bulk load into a fresh table
        otherwise keeps the planner on its empty-table estimates (scanning the whole bank for
        every duplicate check) until autovacuum catches up. SQLite needs nothing."""
        if self._engine.dialect.name != "postgresql":
            return
        with self._engine.begin() as connection:
            for table in (BANK_CONTENT, BANK_SIGNALS):
                connection.exec_driver_sql(f"ANALYZE {table.name}")

    def prune_changes(self, before: datetime) -> int:
        with self._engine.begin() as connection:
            return int(
                connection.execute(
                    sa.delete(BANK_CHANGES).where(BANK_CHANGES.c.created_at < before)
                ).rowcount
            )

    # internals

    def _locked_bank(self, connection: sa.Connection, name: str) -> BankInfo:
        """The bank, locked until the transaction ends: writers to one bank take turns.

        On SQLite a no-op write takes the database's write lock up front, which also makes
        ``_allocate_ids`` safe there."""
        query = sa.select(*_BANK_COLUMNS).where(BANKS.c.name == name)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        else:
            connection.execute(
                sa.update(BANKS).where(BANKS.c.name == name).values(name=BANKS.c.name)
            )
        row = connection.execute(query).first()
        if row is None:
            raise NotFoundError(f"no bank named {name!r}")
        return _bank_from_row(row)

    def _known(
        self, connection: sa.Connection, bank_id: int, contents: Sequence[NewContent]
    ) -> set[tuple[str, str]]:
        wanted = {(s.signal_type, s.value) for c in contents for s in c.signals}
        known: set[tuple[str, str]] = set()
        columns = (BANK_SIGNALS.c.signal_type, BANK_SIGNALS.c.value)
        for query in _by_hash(bank_id, wanted, columns):
            known.update((row[0], row[1]) for row in connection.execute(query))
        return known

    def _log_changes(self, connection: sa.Connection, bank_id: int, ids: Iterable[int]) -> None:
        ranges = signal_ranges(ids)
        if ranges:
            now = utcnow()
            connection.execute(
                sa.insert(BANK_CHANGES),
                [
                    {
                        "bank_id": bank_id,
                        "first_signal_id": first,
                        "last_signal_id": last,
                        "created_at": now,
                    }
                    for first, last in ranges
                ],
            )
