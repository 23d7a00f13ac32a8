"""User reports and the reviewers' work: the queue, soft locks and decisions.

Decision actions are Openverse's. Every report and every decision is audited; a decision over
many items (bulk) is one decision, applied to all of them or to none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

from mediaguard.config import Settings
from mediaguard.errors import ConflictError, InvalidInputError, RateLimitedError
from mediaguard.metrics import Metrics
from mediaguard.store import Store
from mediaguard.store.audit import AuditInfo
from mediaguard.store.items import ActionInfo, ItemInfo, MatchRecord
from mediaguard.store.review import (
    DECISION_ACTIONS,
    DecisionInfo,
    LockInfo,
    QueueRow,
    ReportInfo,
)

ReportReason = Literal["sensitive", "copyright", "other"]
REPORT_REASONS: tuple[str, ...] = get_args(ReportReason)
MIN_OTHER_DESCRIPTION = 20
MAX_DESCRIPTION = 2000
MAX_NOTES = 2000
MAX_BULK = 500


@dataclass(frozen=True)
class QueueEntry:
    """One item waiting for a decision, with what a reviewer needs to decide."""

    item: ItemInfo
    waiting: QueueRow
    reports: list[ReportInfo]
    matches: list[MatchRecord]
    actions: list[ActionInfo]

    @property
    def pending_reports(self) -> list[ReportInfo]:
        return [report for report in self.reports if report.status == "pending"]

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for report in self.pending_reports:
            counts[report.reason] = counts.get(report.reason, 0) + 1
        return counts


@dataclass(frozen=True)
class ReviewItem:
    """Everything about one item, for its page in the console."""

    item: ItemInfo
    reports: list[ReportInfo]
    matches: list[MatchRecord]
    actions: list[ActionInfo]
    decisions: list[DecisionInfo]
    lock: LockInfo | None
    audit: list[AuditInfo]


@dataclass(frozen=True)
class QueuePage:
    total: int
    entries: list[QueueEntry]


class Review:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self._settings = settings
        self._store = store
        self._repository = store.review
        self._metrics = metrics

    def report(
        self, item_id: int, reason: str, description: str | None, *, reporter: str
    ) -> ReportInfo:
        """File a user's report; ``reporter`` ("token:<name>" or "ip:<address>") is whom the
        rate limit counts."""
        if reason not in REPORT_REASONS:
            raise InvalidInputError(f"reason must be one of: {', '.join(REPORT_REASONS)}")
        description = (description or "").strip() or None
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidInputError(f"the description is longer than {MAX_DESCRIPTION} characters")
        if reason == "other" and len(description or "") < MIN_OTHER_DESCRIPTION:
            raise InvalidInputError(
                f"a report for reason 'other' needs a description of at least "
                f"{MIN_OTHER_DESCRIPTION} characters"
            )
        try:
            report = self._repository.add_report(
                item_id, reason, description, reporter, per_hour=self._settings.report_rate_limit
            )
        except RateLimitedError:
            self._metrics.reports_refused.inc()
            raise
        self._metrics.reports.labels(reason).inc()
        return report

    def queue(
        self, reviewer: str, *, limit: int = 20, offset: int = 0, include_locked: bool = False
    ) -> QueuePage:
        total, rows = self._repository.queue(
            reviewer, limit=limit, offset=offset, include_locked=include_locked
        )
        return QueuePage(total, self._entries(rows))

    def claim_next(self, reviewer: str, *, count: int = 1) -> list[QueueEntry]:
        """Give back the items the reviewer held and lock the oldest others nobody holds (so
        asking again moves on: a skip), and return them. Two reviewers asking at once get
        different items: an item lost to the other is passed over."""
        passed_over: set[int] = set(self._repository.unlock_all(reviewer))
        claimed: list[QueueRow] = []
        while len(claimed) < count:
            _, rows = self._repository.queue(
                reviewer, limit=count + len(passed_over), only_free=True
            )
            fresh = [row for row in rows if row.item_id not in passed_over]
            if not fresh:
                break
            for row in fresh[: count - len(claimed)]:
                try:
                    lock = self.lock(row.item_id, reviewer)
                except ConflictError:
                    passed_over.add(row.item_id)
                    continue
                claimed.append(replace(row, locked_by=lock.reviewer, locked_until=lock.until))
        return self._entries(claimed)

    def lock(self, item_id: int, reviewer: str) -> LockInfo:
        return self._repository.lock(item_id, reviewer, self._settings.review_lock_seconds)

    def release(self, item_id: int, reviewer: str) -> None:
        self._repository.unlock(item_id, reviewer)

    def item(self, item_id: int) -> ReviewItem:
        item = self._store.items.get(item_id)
        return ReviewItem(
            item=item,
            reports=self._repository.reports_of([item_id])[item_id],
            matches=self._store.items.matches(item_id),
            actions=self._store.items.actions_of([item_id]).get(item_id, []),
            decisions=self._repository.decisions(item_id=item_id),
            lock=self._repository.lock_of(item_id),
            audit=self._store.audit.list(subject_type="item", subject_id=str(item_id), limit=200),
        )

    def decide(
        self, item_ids: Sequence[int], action: str, *, reviewer: str, notes: str | None = None
    ) -> DecisionInfo:
        if action not in DECISION_ACTIONS:
            raise InvalidInputError(f"action must be one of: {', '.join(DECISION_ACTIONS)}")
        if not item_ids:
            raise InvalidInputError("a decision needs at least one item")
        if len(set(item_ids)) > MAX_BULK:
            raise InvalidInputError(f"one decision covers at most {MAX_BULK} items")
        notes = (notes or "").strip() or None
        if notes is not None and len(notes) > MAX_NOTES:
            raise InvalidInputError(f"the notes are longer than {MAX_NOTES} characters")
        decision = self._repository.decide(item_ids, action, reviewer, notes)
        self._metrics.decisions.labels(action).inc(len(decision.item_ids))
        return decision

    def decisions(
        self, *, item_id: int | None = None, before_id: int | None = None, limit: int = 50
    ) -> list[DecisionInfo]:
        return self._repository.decisions(item_id=item_id, before_id=before_id, limit=limit)

    def _entries(self, rows: Sequence[QueueRow]) -> list[QueueEntry]:
        ids = [row.item_id for row in rows]
        if not ids:
            return []
        items = {item.id: item for item in self._store.items.get_many(ids)}
        reports = self._repository.reports_of(ids)
        matches = self._store.items.matches_of(ids)
        actions = self._store.items.actions_of(ids)
        return [
            QueueEntry(
                items[row.item_id],
                row,
                reports[row.item_id],
                matches.get(row.item_id, []),
                actions.get(row.item_id, []),
            )
            for row in rows
            if row.item_id in items
        ]
