"""The audit log: one append-only row per thing done (an e-mail, a webhook, a bank change)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mediaguard.store.db import reader, utcnow
from mediaguard.store.models import AUDIT_LOG


@dataclass(frozen=True)
class AuditEvent:
    actor: str  # a token name, or "system"
    event: str  # e.g. "bank.create", "action.notify"
    subject_type: str  # "bank", "item", "action", ...
    subject_id: str
    result: str  # "ok", "failed", "would_take_down", ...
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditInfo:
    id: int
    at: datetime
    actor: str
    event: str
    subject_type: str
    subject_id: str
    reason: str | None
    result: str
    details: dict[str, Any]


def write_audit(connection: sa.Connection, event: AuditEvent) -> None:
    """Append ``event`` inside the caller's transaction, so it commits with what it records."""
    connection.execute(
        sa.insert(AUDIT_LOG).values(
            at=utcnow(),
            actor=event.actor,
            event=event.event,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            reason=event.reason,
            result=event.result,
            details=dict(event.details),
        )
    )


class AuditRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def record(self, event: AuditEvent) -> None:
        with self._engine.begin() as connection:
            write_audit(connection, event)

    def list(
        self,
        *,
        before_id: int | None = None,
        limit: int = 100,
        subject_type: str | None = None,
        subject_id: str | None = None,
    ) -> list[AuditInfo]:
        """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
        query = sa.select(*AUDIT_LOG.c).order_by(AUDIT_LOG.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AUDIT_LOG.c.id < before_id)
        if subject_type is not None:
            query = query.where(AUDIT_LOG.c.subject_type == subject_type)
        if subject_id is not None:
            query = query.where(AUDIT_LOG.c.subject_id == subject_id)
        with self._reader.connect() as connection:
            rows = connection.execute(query).all()
        return [AuditInfo(**row._mapping) for row in rows]
