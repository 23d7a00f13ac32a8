"""User reports, the reviewer queue with its soft locks, and reviewer decisions.

An item is in the queue while it has a pending report or a bank match waiting for a reviewer
(a queued ``review`` action). A lock is a row a reviewer holds until it expires; taking one is a
conditional upsert, so two reviewers asking at once never both get the item. A decision, its
effect on the items, the reports and review actions it settles, and one audit row per item
commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import sqlalchemy as sa

from mediaguard.errors import ConflictError, NotFoundError, RateLimitedError
from mediaguard.store.audit import AuditEvent, write_audit
from mediaguard.store.db import reader, serialised, utcnow
from mediaguard.store.items import insert_for
from mediaguard.store.models import (
    ACTIONS,
    DECISION_ITEMS,
    DECISIONS,
    MEDIA_ITEMS,
    REPORTS,
    REVIEW_LOCKS,
)

_ITEM = MEDIA_ITEMS.c
_REPORT = REPORTS.c
_LOCK = REVIEW_LOCKS.c
_DECISION = DECISIONS.c

DecisionAction = Literal[
    "marked_sensitive",
    "deindexed_sensitive",
    "deindexed_copyright",
    "rejected_reports",
    "deduplicated_reports",
    "reversed_mark_sensitive",
    "reversed_deindex",
]
DECISION_ACTIONS: tuple[DecisionAction, ...] = get_args(DecisionAction)
# What each decision does to an item's columns.
DECISION_EFFECTS: dict[str, dict[str, Any]] = {
    "marked_sensitive": {"reported_sensitive": True},
    "deindexed_sensitive": {"deindexed": "deindexed_sensitive"},
    "deindexed_copyright": {"deindexed": "deindexed_copyright"},
    "rejected_reports": {},
    "deduplicated_reports": {},
    "reversed_mark_sensitive": {"reported_sensitive": False},
    "reversed_deindex": {"deindexed": None},
}
# Locks, decisions and releases run one at a time, so a decision never races a new lock.
_LOCKS_KEY = "review-locks"
# A reversal undoes an earlier decision; it settles no report.
REVERSALS = frozenset({"reversed_mark_sensitive", "reversed_deindex"})


@dataclass(frozen=True)
class ReportInfo:
    id: int
    item_id: int
    reason: str
    description: str | None
    reporter: str
    status: str
    decision_id: int | None
    created_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True)
class QueueRow:
    item_id: int
    waiting_since: datetime
    report_count: int
    pending_review_actions: int
    locked_by: str | None
    locked_until: datetime | None


@dataclass(frozen=True)
class DecisionInfo:
    id: int
    action: str
    reviewer: str
    notes: str | None
    created_at: datetime
    item_ids: list[int]


@dataclass(frozen=True)
class LockInfo:
    item_id: int
    reviewer: str
    until: datetime


class ReviewRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    # -- reports ---------------------------------------------------------------------------

    def add_report(
        self, item_id: int, reason: str, description: str | None, reporter: str, *, per_hour: int
    ) -> ReportInfo:
        """File a report, unless ``reporter`` filed ``per_hour`` in the last hour."""
        now = utcnow()
        with serialised(self._engine, f"report:{reporter}") as connection:
            _require_items(connection, [item_id])
            _refuse_over_limit(connection, reporter, per_hour, now)
            report_id = connection.execute(
                sa.insert(REPORTS)
                .values(
                    item_id=item_id,
                    reason=reason,
                    description=description,
                    reporter=reporter,
                    status="pending",
                    created_at=now,
                )
                .returning(_REPORT.id)
            ).scalar_one()
            write_audit(
                connection,
                AuditEvent(
                    actor=reporter,
                    event="report.create",
                    subject_type="item",
                    subject_id=str(item_id),
                    result="pending",
                    reason=reason,
                    details={"report_id": report_id},
                ),
            )
        return self.get_report(report_id)

    def get_report(self, report_id: int) -> ReportInfo:
        with self._reader.connect() as connection:
            row = connection.execute(sa.select(*REPORTS.c).where(_REPORT.id == report_id)).first()
        if row is None:
            raise NotFoundError(f"no report {report_id}")
        return ReportInfo(**row._mapping)

    def reports_of(self, item_ids: Sequence[int]) -> dict[int, list[ReportInfo]]:
        query = (
            sa.select(*REPORTS.c)
            .where(_REPORT.item_id.in_(list(item_ids)))
            .order_by(_REPORT.created_at, _REPORT.id)
        )
        found: dict[int, list[ReportInfo]] = {item_id: [] for item_id in item_ids}
        with self._reader.connect() as connection:
            for row in connection.execute(query):
                found[row.item_id].append(ReportInfo(**row._mapping))
        return found

    # -- the queue -------------------------------------------------------------------------

    def queue(
        self,
        reviewer: str,
        *,
        limit: int,
        offset: int = 0,
        include_locked: bool = False,
        only_free: bool = False,
    ) -> tuple[int, list[QueueRow]]:
        """Items waiting for a decision, oldest first, without those another reviewer holds
        (unless ``include_locked``; with ``only_free`` also without the reviewer's own); and how
        many there are."""
        now = utcnow()
        waiting = sa.union_all(
            sa.select(
                _REPORT.item_id.label("item_id"),
                _REPORT.created_at.label("since"),
                sa.literal(1).label("report"),
            ).where(_REPORT.status == "pending"),
            sa.select(
                ACTIONS.c.item_id.label("item_id"),
                ACTIONS.c.created_at.label("since"),
                sa.literal(0).label("report"),
            ).where((ACTIONS.c.action == "review") & (ACTIONS.c.status == "queued")),
        ).subquery()
        grouped = (
            sa.select(
                waiting.c.item_id,
                sa.func.min(waiting.c.since).label("since"),
                sa.func.sum(waiting.c.report).label("reports"),
                sa.func.count().label("entries"),
            )
            .group_by(waiting.c.item_id)
            .subquery()
        )
        held = _LOCK.until > now
        if not only_free:
            held = held & (_LOCK.reviewer != reviewer)
        source = grouped.outerjoin(REVIEW_LOCKS, _LOCK.item_id == grouped.c.item_id)
        condition = sa.true() if include_locked else ~sa.func.coalesce(held, False)
        rows_query = (
            sa.select(grouped, _LOCK.reviewer, _LOCK.until)
            .select_from(source)
            .where(condition)
            .order_by(grouped.c.since, grouped.c.item_id)
            .limit(limit)
            .offset(offset)
        )
        count_query = sa.select(sa.func.count()).select_from(source).where(condition)
        with self._reader.connect() as connection:
            total = int(connection.execute(count_query).scalar_one())
            rows = connection.execute(rows_query).all()
        return total, [
            QueueRow(
                item_id=row.item_id,
                waiting_since=row.since,
                report_count=int(row.reports),
                pending_review_actions=int(row.entries - row.reports),
                locked_by=row.reviewer if row.until is not None and row.until > now else None,
                locked_until=row.until if row.until is not None and row.until > now else None,
            )
            for row in rows
        ]

    # -- locks -----------------------------------------------------------------------------

    def lock(self, item_id: int, reviewer: str, seconds: float) -> LockInfo:
        """Hold ``item_id`` for ``seconds`` (or extend the hold); ConflictError if another
        reviewer holds it."""
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        with serialised(self._engine, _LOCKS_KEY) as connection:
            _require_items(connection, [item_id])
            insert = insert_for(REVIEW_LOCKS, connection.dialect.name)
            taken = connection.execute(
                insert.values(item_id=item_id, reviewer=reviewer, until=until)
                .on_conflict_do_update(
                    index_elements=[_LOCK.item_id],
                    set_={"reviewer": reviewer, "until": until},
                    where=(_LOCK.until <= now) | (_LOCK.reviewer == reviewer),
                )
                .returning(_LOCK.item_id)
            ).first()
            if taken is None:
                holder = connection.execute(
                    sa.select(_LOCK.reviewer, _LOCK.until).where(_LOCK.item_id == item_id)
                ).one()
                raise ConflictError(
                    f"item {item_id} is being reviewed by {holder.reviewer} until "
                    f"{holder.until.isoformat(timespec='seconds')}"
                )
        return LockInfo(item_id, reviewer, until)

    def unlock(self, item_id: int, reviewer: str) -> None:
        """Release ``reviewer``'s hold; ConflictError if another reviewer holds the item."""
        with serialised(self._engine, _LOCKS_KEY) as connection:
            _require_items(connection, [item_id])
            _refuse_locked_by_others(connection, [item_id], reviewer, utcnow())
            connection.execute(
                sa.delete(REVIEW_LOCKS).where(
                    (_LOCK.item_id == item_id) & (_LOCK.reviewer == reviewer)
                )
            )

    def unlock_all(self, reviewer: str) -> list[int]:
        """Release every item ``reviewer`` holds; their ids."""
        with serialised(self._engine, _LOCKS_KEY) as connection:
            released = connection.execute(
                sa.delete(REVIEW_LOCKS)
                .where((_LOCK.reviewer == reviewer) & (_LOCK.until > utcnow()))
                .returning(_LOCK.item_id)
            ).scalars()
            ids = sorted(released)
            connection.execute(sa.delete(REVIEW_LOCKS).where(_LOCK.reviewer == reviewer))
        return ids

    def lock_of(self, item_id: int) -> LockInfo | None:
        with self._reader.connect() as connection:
            row = connection.execute(
                sa.select(*REVIEW_LOCKS.c).where(
                    (_LOCK.item_id == item_id) & (_LOCK.until > utcnow())
                )
            ).first()
        return LockInfo(**row._mapping) if row is not None else None

    # -- decisions -------------------------------------------------------------------------

    def decide(
        self, item_ids: Sequence[int], action: str, reviewer: str, notes: str | None
    ) -> DecisionInfo:
        """Record one decision over ``item_ids`` and apply it, all or nothing."""
        ids = sorted(set(item_ids))
        now = utcnow()
        with serialised(self._engine, _LOCKS_KEY) as connection:
            items = _require_items(connection, ids)
            _refuse_locked_by_others(connection, ids, reviewer, now)
            _refuse_needless_reversal(items, action)
            decision_id = connection.execute(
                sa.insert(DECISIONS)
                .values(action=action, reviewer=reviewer, notes=notes, created_at=now)
                .returning(_DECISION.id)
            ).scalar_one()
            connection.execute(
                sa.insert(DECISION_ITEMS),
                [{"decision_id": decision_id, "item_id": item_id} for item_id in ids],
            )
            if DECISION_EFFECTS[action]:
                connection.execute(
                    sa.update(MEDIA_ITEMS)
                    .where(_ITEM.id.in_(ids))
                    .values(**DECISION_EFFECTS[action], updated_at=now)
                )
            settled = self._settle(connection, ids, action, decision_id, now)
            connection.execute(
                sa.delete(REVIEW_LOCKS).where(_LOCK.item_id.in_(ids) & (_LOCK.reviewer == reviewer))
            )
            for item_id in ids:
                write_audit(
                    connection,
                    AuditEvent(
                        actor=reviewer,
                        event="review.decision",
                        subject_type="item",
                        subject_id=str(item_id),
                        result=action,
                        reason=notes,
                        details={
                            "decision_id": decision_id,
                            "items": len(ids),
                            "reports_settled": settled.get(item_id, 0),
                        },
                    ),
                )
        return DecisionInfo(decision_id, action, reviewer, notes, now, ids)

    def _settle(
        self,
        connection: sa.Connection,
        ids: list[int],
        action: str,
        decision_id: int,
        now: datetime,
    ) -> dict[int, int]:
        """Close the pending reports and waiting review actions of the decided items."""
        if action in REVERSALS:
            return {}
        pending = (_REPORT.item_id.in_(ids)) & (_REPORT.status == "pending")
        settled = {
            row.item_id: int(row.n)
            for row in connection.execute(
                sa.select(_REPORT.item_id, sa.func.count().label("n"))
                .where(pending)
                .group_by(_REPORT.item_id)
            )
        }
        connection.execute(
            sa.update(REPORTS)
            .where(pending)
            .values(status=action, decision_id=decision_id, decided_at=now)
        )
        connection.execute(
            sa.update(ACTIONS)
            .where(
                ACTIONS.c.item_id.in_(ids)
                & (ACTIONS.c.action == "review")
                & (ACTIONS.c.status == "queued")
            )
            .values(status="done", detail=f"decision {decision_id}: {action}", updated_at=now)
        )
        return settled

    def decisions(
        self, *, item_id: int | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[DecisionInfo]:
        """Newest first."""
        query = sa.select(*DECISIONS.c).order_by(_DECISION.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(_DECISION.id < before_id)
        if item_id is not None:
            query = query.where(
                _DECISION.id.in_(
                    sa.select(DECISION_ITEMS.c.decision_id).where(
                        DECISION_ITEMS.c.item_id == item_id
                    )
                )
            )
        with self._reader.connect() as connection:
            rows = connection.execute(query).all()
            members: dict[int, list[int]] = {row.id: [] for row in rows}
            if members:
                for decision_id, member in connection.execute(
                    sa.select(DECISION_ITEMS.c.decision_id, DECISION_ITEMS.c.item_id)
                    .where(DECISION_ITEMS.c.decision_id.in_(list(members)))
                    .order_by(DECISION_ITEMS.c.item_id)
                ):
                    members[decision_id].append(member)
        return [
            DecisionInfo(
                row.id, row.action, row.reviewer, row.notes, row.created_at, members[row.id]
            )
            for row in rows
        ]


def _refuse_over_limit(
    connection: sa.Connection, reporter: str, per_hour: int, now: datetime
) -> None:
    recent = (_REPORT.reporter == reporter) & (_REPORT.created_at > now - timedelta(hours=1))
    filed = connection.execute(sa.select(sa.func.count()).where(recent)).scalar_one()
    if filed < per_hour:
        return
    # The window has room again once the report that tipped it over leaves it.
    tipping = connection.execute(
        sa.select(_REPORT.created_at)
        .where(recent)
        .order_by(_REPORT.created_at.desc())
        .offset(per_hour - 1)
        .limit(1)
    ).scalar_one()
    wait = (tipping + timedelta(hours=1) - now).total_seconds()
    raise RateLimitedError(
        f"at most {per_hour} reports an hour; try again later", retry_after=max(1, int(wait) + 1)
    )


def _require_items(connection: sa.Connection, ids: Sequence[int]) -> dict[int, Any]:
    rows: dict[int, Any] = {
        row.id: row
        for row in connection.execute(
            sa.select(_ITEM.id, _ITEM.reported_sensitive, _ITEM.deindexed).where(
                _ITEM.id.in_(list(ids))
            )
        )
    }
    missing = [item_id for item_id in ids if item_id not in rows]
    if missing:
        raise NotFoundError(f"no media item {', '.join(map(str, missing))}")
    return rows


def _refuse_locked_by_others(
    connection: sa.Connection, ids: Sequence[int], reviewer: str, now: datetime
) -> None:
    held = connection.execute(
        sa.select(_LOCK.item_id, _LOCK.reviewer).where(
            _LOCK.item_id.in_(list(ids)) & (_LOCK.until > now) & (_LOCK.reviewer != reviewer)
        )
    ).all()
    if held:
        names = ", ".join(f"{row.item_id} ({row.reviewer})" for row in held)
        raise ConflictError(f"another reviewer holds item {names}; nothing was done")


def _refuse_needless_reversal(items: dict[int, Any], action: str) -> None:
    if action == "reversed_mark_sensitive":
        wrong = [item_id for item_id, row in items.items() if not row.reported_sensitive]
        what = "marked sensitive"
    elif action == "reversed_deindex":
        wrong = [item_id for item_id, row in items.items() if row.deindexed is None]
        what = "deindexed"
    else:
        return
    if wrong:
        raise ConflictError(
            f"item {', '.join(map(str, sorted(wrong)))} is not {what}; nothing was decided"
        )
