"""Media items, the banks they matched, and the actions taken on them.

The unique keys do the bookkeeping: (platform_id, sha256) is one item, (item, bank) one match,
(item, bank, action) one action. Inserting with ON CONFLICT DO NOTHING tells a first match or a
first action apart from a repeated one, so a re-scan or a second worker never acts twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mediaguard.errors import NotFoundError
from mediaguard.store.audit import AuditEvent, write_audit
from mediaguard.store.db import reader, utcnow
from mediaguard.store.models import ACTIONS, ITEM_MATCHES, MEDIA_ITEMS


def sensitivity_labels(text: bool, image: bool, reported: bool) -> list[str]:
    flags = (
        ("sensitive_text", text),
        ("sensitive_image", image),
        ("user_reported_sensitivity", reported),
    )
    return [label for label, flagged in flags if flagged]


@dataclass(frozen=True)
class ItemInfo:
    id: int
    platform_id: str
    intake_key: str
    origin: str
    media_url: str | None
    sha256: str | None
    sha1: str | None
    md5: str | None
    pdq: str | None
    pdq_quality: int | None
    match_status: str | None
    last_checked_at: datetime | None
    state: str
    title: str | None
    description: str | None
    tags: list[str] | None
    uploader: str | None
    attempts: int
    error_code: str | None
    error_detail: str | None
    lease_owner: str | None
    queued_at: datetime | None
    enqueued_at: datetime | None
    next_attempt_at: datetime | None
    lease_until: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    nsfw_score: float | None
    nsfw_model_version: str | None
    width: int | None
    height: int | None
    media_format: str | None
    created_at: datetime
    updated_at: datetime
    text_sensitive: bool
    image_sensitive: bool
    reported_sensitive: bool
    matched_terms: list[str] | None
    terms_version: str | None
    deindexed: str | None
    search_text: str | None

    @property
    def sensitivity(self) -> list[str]:
        """The public labels, in Openverse's names."""
        return sensitivity_labels(
            self.text_sensitive, self.image_sensitive, self.reported_sensitive
        )


@dataclass(frozen=True)
class MatchRecord:
    bank_id: int
    bank_name: str
    category: str
    signal_type: str
    distance: int
    bank_content_id: int


@dataclass(frozen=True)
class PlannedAction:
    bank_id: int
    action: str  # notify, takedown, review
    mode: str  # how it runs: "email", "automatic", "would_take_down", "needs_review", "queue"


@dataclass(frozen=True)
class ActionInfo:
    id: int
    item_id: int
    bank_id: int
    action: str
    mode: str
    status: str  # pending, running, done, failed, queued
    detail: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


_MATCH_COLUMNS = (
    ITEM_MATCHES.c.bank_id,
    ITEM_MATCHES.c.bank_name,
    ITEM_MATCHES.c.category,
    ITEM_MATCHES.c.signal_type,
    ITEM_MATCHES.c.distance,
    ITEM_MATCHES.c.bank_content_id,
)


def insert_for(table: sa.Table, dialect: str) -> sqlite.Insert | postgresql.Insert:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database backend {dialect!r}")


class ItemRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._dialect = engine.dialect.name

    def upsert(
        self,
        *,
        platform_id: str,
        sha256: str,
        sha1: str | None = None,
        md5: str | None = None,
        pdq: str | None = None,
        pdq_quality: int | None = None,
        media_url: str | None = None,
    ) -> ItemInfo:
        """The checked item for (platform_id, sha256), created if new; known fields are filled
        in. Items of the upload pipeline are keyed the same way when their bytes were sent."""
        now = utcnow()
        fields = {"sha1": sha1, "md5": md5, "pdq": pdq, "pdq_quality": pdq_quality}
        fields = {key: value for key, value in fields.items() if value is not None}
        if media_url is not None:
            fields["media_url"] = media_url
        intake_key = f"sha256:{sha256}"
        key = (MEDIA_ITEMS.c.platform_id == platform_id) & (MEDIA_ITEMS.c.intake_key == intake_key)
        with self._engine.begin() as connection:
            insert = (
                insert_for(MEDIA_ITEMS, self._dialect)
                .values(
                    platform_id=platform_id,
                    intake_key=intake_key,
                    sha256=sha256,
                    origin="check",
                    state="done",
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
                .on_conflict_do_nothing(index_elements=["platform_id", "intake_key"])
            )
            connection.execute(insert)
            if fields:
                connection.execute(
                    sa.update(MEDIA_ITEMS).where(key).values(updated_at=now, **fields)
                )
            row = connection.execute(sa.select(*MEDIA_ITEMS.c).where(key)).one()
        return ItemInfo(**row._mapping)

    def get(self, item_id: int) -> ItemInfo:
        with self._reader.connect() as connection:
            row = connection.execute(
                sa.select(*MEDIA_ITEMS.c).where(MEDIA_ITEMS.c.id == item_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no media item {item_id}")
        return ItemInfo(**row._mapping)

    def get_many(self, item_ids: Sequence[int]) -> list[ItemInfo]:
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(*MEDIA_ITEMS.c).where(MEDIA_ITEMS.c.id.in_(list(item_ids)))
            ).all()
        return [ItemInfo(**row._mapping) for row in rows]

    def known_matches(
        self, *, sha1: str | None = None, sha256: str | None = None
    ) -> list[MatchRecord]:
        """Banks any item with this digest matched before: one record per bank."""
        conditions = []
        if sha1:
            conditions.append(MEDIA_ITEMS.c.sha1 == sha1)
        if sha256:
            conditions.append(MEDIA_ITEMS.c.sha256 == sha256)
        if not conditions:
            return []
        query = (
            sa.select(*_MATCH_COLUMNS)
            .join(MEDIA_ITEMS, MEDIA_ITEMS.c.id == ITEM_MATCHES.c.item_id)
            .where(sa.or_(*conditions))
            .order_by(ITEM_MATCHES.c.distance, ITEM_MATCHES.c.id)
        )
        with self._reader.connect() as connection:
            rows = connection.execute(query).all()
        by_bank: dict[int, MatchRecord] = {}
        for row in rows:
            by_bank.setdefault(row[0], MatchRecord(*row))
        return list(by_bank.values())

    def matches(self, item_id: int) -> list[MatchRecord]:
        return self.matches_of([item_id]).get(item_id, [])

    def matches_of(self, item_ids: Sequence[int]) -> dict[int, list[MatchRecord]]:
        """Each item's matches, oldest first, in one query (items without any are left out)."""
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(ITEM_MATCHES.c.item_id, *_MATCH_COLUMNS)
                .where(ITEM_MATCHES.c.item_id.in_(item_ids))
                .order_by(ITEM_MATCHES.c.id)
            ).all()
        found: dict[int, list[MatchRecord]] = {}
        for item_id, *record in rows:
            found.setdefault(item_id, []).append(MatchRecord(*record))
        return found

    def actions_of(self, item_ids: Sequence[int]) -> dict[int, list[ActionInfo]]:
        """Each item's actions, oldest first, in one query (items without any are left out)."""
        with self._reader.connect() as connection:
            rows = connection.execute(
                sa.select(*ACTIONS.c).where(ACTIONS.c.item_id.in_(item_ids)).order_by(ACTIONS.c.id)
            ).all()
        found: dict[int, list[ActionInfo]] = {}
        for row in rows:
            action = ActionInfo(**row._mapping)
            found.setdefault(action.item_id, []).append(action)
        return found

    def record_check(
        self,
        item_id: int,
        matches: Sequence[MatchRecord],
        planned: Sequence[PlannedAction],
        *,
        item_fields: Mapping[str, Any] | None = None,
    ) -> tuple[list[MatchRecord], list[ActionInfo]]:
        """Store the outcome of one check: new matches and the actions to run are returned: new
        ones, and any left unclaimed (``pending``) by an earlier check; matches and actions
        already recorded are not, whoever recorded them. ``item_fields`` (the
        hashes the check was made on) are set on the item in the same transaction."""
        now = utcnow()
        new_matches: list[MatchRecord] = []
        new_actions: list[ActionInfo] = []
        with self._engine.begin() as connection:
            for match in matches:
                inserted = connection.execute(
                    insert_for(ITEM_MATCHES, self._dialect)
                    .values(item_id=item_id, created_at=now, **match.__dict__)
                    .on_conflict_do_nothing(index_elements=["item_id", "bank_id"])
                    .returning(ITEM_MATCHES.c.id)
                ).first()
                if inserted is not None:
                    new_matches.append(match)
            for plan in planned:
                row = connection.execute(
                    insert_for(ACTIONS, self._dialect)
                    .values(
                        item_id=item_id,
                        bank_id=plan.bank_id,
                        action=plan.action,
                        mode=plan.mode,
                        status="queued" if plan.action == "review" else "pending",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["item_id", "bank_id", "action"])
                    .returning(*ACTIONS.c)
                ).first()
                if row is not None:
                    new_actions.append(ActionInfo(**row._mapping))
            # Recorded by an earlier check whose process died before claiming them: never
            # run, so they run now (claiming keeps that to once).
            new_ids = [action.id for action in new_actions]
            unclaimed = connection.execute(
                sa.select(*ACTIONS.c).where(
                    ACTIONS.c.item_id == item_id,
                    ACTIONS.c.status == "pending",
                    ACTIONS.c.id.not_in(new_ids),
                )
            ).all()
            new_actions += [ActionInfo(**row._mapping) for row in unclaimed]
            matched = connection.execute(
                sa.select(sa.func.count())
                .select_from(ITEM_MATCHES)
                .where(ITEM_MATCHES.c.item_id == item_id)
            ).scalar_one()
            connection.execute(
                sa.update(MEDIA_ITEMS)
                .where(MEDIA_ITEMS.c.id == item_id)
                .values(
                    match_status="match" if matched else "no_match",
                    last_checked_at=now,
                    updated_at=now,
                    **(item_fields or {}),
                )
            )
        return new_matches, new_actions

    # actions

    def claim(self, action_id: int) -> bool:
        """Take a pending action to run it; false if another runner has it or it is done.

        Claiming before running is what makes an action run at most once: a runner killed after
        its claim leaves the action ``running`` for an operator to look at, never re-sent.
        """
        with self._engine.begin() as connection:
            claimed = connection.execute(
                sa.update(ACTIONS)
                .where(ACTIONS.c.id == action_id, ACTIONS.c.status == "pending")
                .values(status="running", attempts=ACTIONS.c.attempts + 1, updated_at=utcnow())
            ).rowcount
        return bool(claimed)

    def finish(self, action_id: int, status: str, detail: str | None, audit: AuditEvent) -> None:
        """Record how an action ended and its audit row, in one transaction."""
        with self._engine.begin() as connection:
            connection.execute(
                sa.update(ACTIONS)
                .where(ACTIONS.c.id == action_id)
                .values(status=status, detail=detail, updated_at=utcnow())
            )
            write_audit(connection, audit)

    def interrupt_stale(self, cutoff: datetime) -> list[ActionInfo]:
        """Actions left ``running`` since before ``cutoff`` by a process that died: failed, with
        an audit row, for an operator to retry. Never re-run on their own: the e-mail or webhook
        may have gone out just before the process died."""
        stale = (ACTIONS.c.status == "running") & (ACTIONS.c.updated_at < cutoff)
        detail = "interrupted: the process running it stopped; it may have been sent already"
        with self._engine.begin() as connection:
            rows = connection.execute(
                sa.update(ACTIONS)
                .where(stale)
                .values(status="failed", detail=detail, updated_at=utcnow())
                .returning(*ACTIONS.c)
            ).all()
            interrupted = [ActionInfo(**row._mapping) for row in rows]
            for action in interrupted:
                write_audit(
                    connection,
                    AuditEvent(
                        actor="sweeper",
                        event=f"action.{action.action}",
                        subject_type="item",
                        subject_id=str(action.item_id),
                        reason=detail,
                        result="interrupted",
                        details={"action_id": action.id, "bank_id": action.bank_id},
                    ),
                )
        return interrupted

    def retry(self, action_id: int) -> ActionInfo:
        """Put a failed action back to pending, for an operator's explicit retry."""
        with self._engine.begin() as connection:
            connection.execute(
                sa.update(ACTIONS)
                .where(ACTIONS.c.id == action_id, ACTIONS.c.status == "failed")
                .values(status="pending", updated_at=utcnow())
            )
        return self.get_action(action_id)

    def get_action(self, action_id: int) -> ActionInfo:
        found = self.actions(action_ids=[action_id])
        if not found:
            raise NotFoundError(f"no action {action_id}")
        return found[0]

    def actions(
        self,
        *,
        item_id: int | None = None,
        status: str | None = None,
        action_ids: Sequence[int] | None = None,
        limit: int = 100,
    ) -> list[ActionInfo]:
        query: sa.Select[Any] = sa.select(*ACTIONS.c).order_by(ACTIONS.c.id).limit(limit)
        if item_id is not None:
            query = query.where(ACTIONS.c.item_id == item_id)
        if status is not None:
            query = query.where(ACTIONS.c.status == status)
        if action_ids is not None:
            query = query.where(ACTIONS.c.id.in_(action_ids))
        with self._reader.connect() as connection:
            rows = connection.execute(query).all()
        return [ActionInfo(**row._mapping) for row in rows]
