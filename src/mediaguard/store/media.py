"""Upload pipeline state: items as notifications, their leases, retries and verdict signals.

Every transition is one conditional UPDATE, so two workers (or a worker and the sweeper) can race
on an item and only one wins: ``claim`` takes a queued item or one whose lease expired, and only
the lease holder may ``complete``, ``retry_later`` or ``fail`` it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mediaguard.store.audit import AuditEvent, write_audit
from mediaguard.store.db import reader, utcnow
from mediaguard.store.items import ItemInfo, insert_for
from mediaguard.store.models import MEDIA_CONTENT, MEDIA_ITEMS
from mediaguard.store.search import search_text

_ITEM = MEDIA_ITEMS.c
ACTIVE_STATES = ("queued", "processing")


@dataclass(frozen=True)
class NewMedia:
    platform_id: str
    intake_key: str
    origin: str
    media_url: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    title: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    uploader: str | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class SignalValues:
    """What processing learned about the content, stored with the verdict (the hashes are
    recorded with the item's check)."""

    nsfw_score: float
    nsfw_model_version: str
    width: int
    height: int
    media_format: str
    image_sensitive: bool
    matched_terms: list[str] | None
    text_sensitive: bool
    terms_version: str
    # The search_text the terms were matched in: if the metadata changed meanwhile, the labels
    # are stale and the version is left unset, for the term job to label the item again.
    labelled_text: str | None


@dataclass(frozen=True)
class QueueStats:
    by_state: dict[str, int]
    failed_by_reason: dict[str, int]
    oldest_queued_at: datetime | None


def _release(connection: sa.Connection, held: sa.ColumnElement[bool], **values: Any) -> bool:
    """Move an item out of ``processing`` (lease given up) with one conditional UPDATE: true if
    ``held`` still matched, i.e. nobody else took the item meanwhile."""
    update = sa.update(MEDIA_ITEMS).where(held)
    released = update.values(lease_owner=None, lease_until=None, updated_at=utcnow(), **values)
    return bool(connection.execute(released).rowcount)


def _drop_content(connection: sa.Connection, item_id: int) -> None:
    connection.execute(sa.delete(MEDIA_CONTENT).where(MEDIA_CONTENT.c.item_id == item_id))


_TEXT = ("title", "description", "tags")


def _changed_text(
    connection: sa.Connection, key: sa.ColumnElement[bool], changes: dict[str, Any]
) -> tuple[Any, ...] | None:
    """The item's (title, description, tags) once ``changes`` apply, if they change any."""
    if not any(name in changes for name in _TEXT):
        return None
    before = connection.execute(
        sa.select(_ITEM.title, _ITEM.description, _ITEM.tags).where(key)
    ).one()
    after = tuple(changes.get(name, getattr(before, name)) for name in _TEXT)
    return after if after != tuple(before) else None


def _fields(new: NewMedia) -> dict[str, Any]:
    return {
        "media_url": new.media_url,
        "title": new.title,
        "description": new.description,
        "tags": new.tags,
        "uploader": new.uploader,
    }


class MediaRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._dialect = engine.dialect.name

    # intake

    def find_key(self, platform_id: str, intake_key: str) -> ItemInfo | None:
        with self._reader.connect() as connection:
            row = connection.execute(
                sa.select(*MEDIA_ITEMS.c).where(
                    _ITEM.platform_id == platform_id, _ITEM.intake_key == intake_key
                )
            ).first()
        return ItemInfo(**row._mapping) if row else None

    def submit(self, new: NewMedia, *, requeue: bool = False) -> tuple[ItemInfo, bool, bool]:
        """Store a notification and its bytes in one transaction: (item, created, requeued).

        A repeated notification refreshes the metadata it carries and, with ``requeue``, sends a
        finished item round again."""
        now = utcnow()
        key = (_ITEM.platform_id == new.platform_id) & (_ITEM.intake_key == new.intake_key)
        queued = {
            "state": "queued",
            "attempts": 0,
            "queued_at": now,
            "enqueued_at": now,
            "next_attempt_at": None,
            "error_code": None,
            "error_detail": None,
            "finished_at": None,
        }
        requeued = False
        with self._engine.begin() as connection:
            inserted = connection.execute(
                insert_for(MEDIA_ITEMS, self._dialect)
                .values(
                    platform_id=new.platform_id,
                    intake_key=new.intake_key,
                    origin=new.origin,
                    sha256=new.sha256,
                    sha1=new.sha1,
                    created_at=now,
                    updated_at=now,
                    search_text=search_text(new.title, new.description, new.tags),
                    **_fields(new),
                    **queued,
                )
                .on_conflict_do_nothing(index_elements=["platform_id", "intake_key"])
                .returning(_ITEM.id)
            ).first()
            created = inserted is not None
            if not created:
                changes = {k: v for k, v in _fields(new).items() if v is not None}
                text = _changed_text(connection, key, changes)
                if requeue:
                    result = connection.execute(
                        sa.update(MEDIA_ITEMS)
                        .where(key, _ITEM.state.not_in(ACTIVE_STATES))
                        .values(updated_at=now, **changes, **queued)
                    )
                    requeued = bool(result.rowcount)
                if changes and not requeued:
                    connection.execute(
                        sa.update(MEDIA_ITEMS).where(key).values(updated_at=now, **changes)
                    )
                if text is not None:
                    # Index the new text; out of public view until it has its term labels.
                    connection.execute(
                        sa.update(MEDIA_ITEMS)
                        .where(key)
                        .values(search_text=search_text(*text), terms_version=None)
                    )
            row = connection.execute(sa.select(*MEDIA_ITEMS.c).where(key)).one()
            if new.content is not None and (created or requeued):
                connection.execute(
                    insert_for(MEDIA_CONTENT, self._dialect)
                    .values(item_id=row.id, content=new.content, created_at=now)
                    .on_conflict_do_nothing(index_elements=["item_id"])
                )
        return ItemInfo(**row._mapping), created, requeued

    def mark_not_enqueued(self, item_ids: Sequence[int]) -> None:
        """The queue refused these ids: leave them for the sweeper."""
        with self._engine.begin() as connection:
            connection.execute(
                sa.update(MEDIA_ITEMS).where(_ITEM.id.in_(item_ids)).values(enqueued_at=None)
            )

    # processing

    def claim(self, item_id: int, owner: str, lease: float) -> ItemInfo | None:
        """Lease a queued item that is due, or one whose lease expired; None if another worker
        holds it, it is finished, or it is waiting for a retry."""
        now = utcnow()
        claimable = (
            (_ITEM.state == "queued")
            & (_ITEM.next_attempt_at.is_(None) | (_ITEM.next_attempt_at <= now))
        ) | ((_ITEM.state == "processing") & (_ITEM.lease_until < now))
        with self._engine.begin() as connection:
            claimed = connection.execute(
                sa.update(MEDIA_ITEMS)
                .where(_ITEM.id == item_id, claimable)
                .values(
                    state="processing",
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease),
                    attempts=_ITEM.attempts + 1,
                    started_at=now,
                    updated_at=now,
                )
                .returning(*MEDIA_ITEMS.c)
            ).first()
        return ItemInfo(**claimed._mapping) if claimed else None

    def content(self, item_id: int) -> bytes | None:
        with self._reader.connect() as connection:
            content = connection.execute(
                sa.select(MEDIA_CONTENT.c.content).where(MEDIA_CONTENT.c.item_id == item_id)
            ).scalar()
        return bytes(content) if content is not None else None

    def complete(
        self,
        item_id: int,
        owner: str,
        signals: SignalValues,
        *,
        also: Callable[[sa.Connection], object] | None = None,
    ) -> bool:
        """The verdict: done, with its signals; the upload's bytes go; ``also`` writes more in
        the same transaction. False if the lease was lost (another worker took over), in which
        case nothing is written."""
        values = dict(signals.__dict__)
        labelled = _ITEM.search_text.is_not_distinct_from(values.pop("labelled_text"))
        values["terms_version"] = sa.case((labelled, values["terms_version"]), else_=None)
        with self._engine.begin() as connection:
            done = _release(
                connection,
                (_ITEM.id == item_id) & (_ITEM.lease_owner == owner),
                state="done",
                finished_at=utcnow(),
                error_code=None,
                error_detail=None,
                **values,
            )
            if done:
                _drop_content(connection, item_id)
                if also is not None:
                    also(connection)
        return done

    def retry_later(self, item_id: int, owner: str, code: str, detail: str, delay: float) -> bool:
        with self._engine.begin() as connection:
            return _release(
                connection,
                (_ITEM.id == item_id) & (_ITEM.lease_owner == owner),
                state="queued",
                enqueued_at=None,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                error_code=code,
                error_detail=detail,
            )

    def fail(
        self, item_id: int, owner: str | None, code: str, detail: str, *, keep_content: bool
    ) -> bool:
        """Failed for good. The bytes of an upload stay when a later manual retry could work."""
        held = _ITEM.lease_owner == owner if owner else _ITEM.state != "done"
        with self._engine.begin() as connection:
            failed = _release(
                connection,
                (_ITEM.id == item_id) & held,
                state="failed",
                finished_at=utcnow(),
                error_code=code,
                error_detail=detail,
            )
            if failed and not keep_content:
                _drop_content(connection, item_id)
        return failed

    def requeue_failed(self, item_id: int, audit: AuditEvent) -> bool:
        """A failed item back in the queue with its attempts reset, audited (an operator's call)."""
        now = utcnow()
        with self._engine.begin() as connection:
            requeued = connection.execute(
                sa.update(MEDIA_ITEMS)
                .where(_ITEM.id == item_id, _ITEM.state == "failed")
                .values(
                    state="queued",
                    attempts=0,
                    queued_at=now,
                    enqueued_at=now,
                    next_attempt_at=None,
                    finished_at=None,
                    updated_at=now,
                )
            ).rowcount
            if requeued:
                write_audit(connection, audit)
        return bool(requeued)

    # sweeping

    def expired_leases(self, limit: int = 1000) -> list[ItemInfo]:
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(*MEDIA_ITEMS.c)
                .where(_ITEM.state == "processing", _ITEM.lease_until < utcnow())
                .order_by(_ITEM.id)
                .limit(limit)
            ).all()
        return [ItemInfo(**row._mapping) for row in rows]

    def requeue_expired(self, item: ItemInfo) -> bool:
        """Back to the queue, if the lease is still the expired one."""
        with self._engine.begin() as connection:
            return _release(
                connection,
                (_ITEM.id == item.id)
                & (_ITEM.state == "processing")
                & (_ITEM.lease_owner == item.lease_owner)
                & (_ITEM.lease_until < utcnow()),
                state="queued",
                next_attempt_at=None,
                enqueued_at=None,
                error_code="lease_expired",
                error_detail="the worker holding this item stopped or stalled",
            )

    def take_due(self, *, limit: int, stale_before: datetime, lost_before: datetime) -> list[int]:
        """Queued items that are due and have no message in the queue, or whose message may be
        lost: never enqueued (a retry, a refused enqueue), or enqueued before ``lost_before``.
        They are marked enqueued now, so two sweepers rarely enqueue the same item."""
        now = utcnow()
        due = (
            (_ITEM.state == "queued")
            & (_ITEM.next_attempt_at.is_(None) | (_ITEM.next_attempt_at <= now))
            & (
                (_ITEM.enqueued_at.is_(None) & (_ITEM.updated_at < stale_before))
                | (_ITEM.enqueued_at.is_(None) & _ITEM.next_attempt_at.is_not(None))
                | (_ITEM.enqueued_at < lost_before)
            )
        )
        with self._engine.begin() as connection:
            ids = list(
                connection.execute(
                    sa.select(_ITEM.id).where(due).order_by(_ITEM.id).limit(limit)
                ).scalars()
            )
            if ids:
                connection.execute(
                    sa.update(MEDIA_ITEMS).where(_ITEM.id.in_(ids), due).values(enqueued_at=now)
                )
        return ids

    # reading

    def states(self, item_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        with self._reader.connect() as connection:
            for start in range(0, len(item_ids), 500):
                chunk = list(item_ids[start : start + 500])
                found.update(
                    connection.execute(
                        sa.select(_ITEM.id, _ITEM.state).where(_ITEM.id.in_(chunk))
                    ).all()
                )
        return found

    def find(
        self, *, sha1: str | None = None, platform_id: str | None = None, limit: int = 100
    ) -> list[ItemInfo]:
        query = sa.select(*MEDIA_ITEMS.c).order_by(_ITEM.id.desc()).limit(limit)
        if sha1 is not None:
            query = query.where(_ITEM.sha1 == sha1)
        if platform_id is not None:
            query = query.where(_ITEM.platform_id == platform_id)
        with self._reader.connect() as connection:
            return [ItemInfo(**row._mapping) for row in connection.execute(query).all()]

    def done_with(self, *, sha1: str, model_version: str, since: datetime | None) -> bool:
        """Whether some item with this SHA-1 was processed with this model (since ``since``)."""
        query = sa.select(_ITEM.id).where(
            _ITEM.sha1 == sha1, _ITEM.state == "done", _ITEM.nsfw_model_version == model_version
        )
        if since is not None:
            query = query.where(_ITEM.finished_at >= since)
        with self._reader.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None

    def stats(self) -> QueueStats:
        with self._reader.connect() as connection:
            by_state: dict[str, int] = dict(
                connection.execute(
                    sa.select(_ITEM.state, sa.func.count()).group_by(_ITEM.state)
                ).all()
            )
            failed: dict[str | None, int] = dict(
                connection.execute(
                    sa.select(_ITEM.error_code, sa.func.count())
                    .where(_ITEM.state == "failed")
                    .group_by(_ITEM.error_code)
                ).all()
            )
            oldest = connection.execute(
                sa.select(sa.func.min(_ITEM.queued_at)).where(_ITEM.state == "queued")
            ).scalar()
        if isinstance(oldest, str):  # SQLite's MIN() loses the column type
            oldest = datetime.fromisoformat(oldest)
        return QueueStats(
            by_state={str(k): int(v) for k, v in by_state.items()},
            failed_by_reason={str(k or "unknown"): int(v) for k, v in failed.items()},
            oldest_queued_at=oldest,
        )
