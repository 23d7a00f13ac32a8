"""Term lists and the re-evaluation of every item's text labels against the list in force.

The newest row of ``term_lists`` is in force. Re-evaluation walks ``media_items`` in id order in
batches; each batch's labels and the list's cursor commit together, and only the lease holder
may advance the cursor, so a process that dies mid-way leaves a cursor the next one resumes at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mediaguard.store.db import reader, serialised, utcnow
from mediaguard.store.models import MEDIA_ITEMS, TERM_LISTS

_LIST = TERM_LISTS.c
_ITEM = MEDIA_ITEMS.c


@dataclass(frozen=True)
class TermListInfo:
    id: int
    version: str
    terms: list[str]
    source: str
    created_at: datetime
    relabel_cursor: int
    relabelled: int
    relabel_owner: str | None
    relabel_lease_until: datetime | None
    relabel_finished_at: datetime | None


@dataclass(frozen=True)
class ItemText:
    id: int
    title: str | None
    description: str | None
    tags: list[str] | None
    search_text: str | None


@dataclass(frozen=True)
class TextLabels:
    item_id: int
    matched_terms: list[str]
    # The search_text matched: metadata changed since is left for the next round.
    seen: str | None


class TermListRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    def current(self) -> TermListInfo | None:
        query = sa.select(*TERM_LISTS.c).order_by(_LIST.id.desc()).limit(1)
        with self._reader.connect() as connection:
            row = connection.execute(query).first()
        return TermListInfo(**row._mapping) if row is not None else None

    def put(self, version: str, terms: Sequence[str], source: str) -> TermListInfo:
        """Put a list in force, unless it already is (two processes loading it at once both
        see the same newest version afterwards)."""
        with serialised(self._engine, "term-lists") as connection:
            newest = connection.execute(
                sa.select(_LIST.version).order_by(_LIST.id.desc()).limit(1)
            ).scalar()
            if newest != version:
                connection.execute(
                    sa.insert(TERM_LISTS).values(
                        version=version, terms=list(terms), source=source, created_at=utcnow()
                    )
                )
        current = self.current()
        assert current is not None
        return current

    def claim_relabel(self, list_id: int, owner: str, lease: float) -> bool:
        """Take (or extend) the right to re-evaluate items against list ``list_id``."""
        now = utcnow()
        free = (
            _LIST.relabel_owner.is_(None)
            | (_LIST.relabel_owner == owner)
            | (_LIST.relabel_lease_until < now)
        )
        with self._engine.begin() as connection:
            claimed = connection.execute(
                sa.update(TERM_LISTS)
                .where((_LIST.id == list_id) & _LIST.relabel_finished_at.is_(None) & free)
                .values(relabel_owner=owner, relabel_lease_until=now + timedelta(seconds=lease))
            ).rowcount
        return claimed == 1

    def stale_items(self, version: str, *, after: int = 0, limit: int = 500) -> list[ItemText]:
        """Items after id ``after`` labelled with another list, or never labelled."""
        query = (
            sa.select(_ITEM.id, _ITEM.title, _ITEM.description, _ITEM.tags, _ITEM.search_text)
            .where((_ITEM.id > after) & _stale(version))
            .order_by(_ITEM.id)
            .limit(limit)
        )
        with self._reader.connect() as connection:
            return [ItemText(**row._mapping) for row in connection.execute(query)]

    def count_stale(self, version: str) -> int:
        query = sa.select(sa.func.count()).select_from(MEDIA_ITEMS).where(_stale(version))
        with self._reader.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def apply(
        self,
        list_id: int,
        version: str,
        owner: str,
        labels: Sequence[TextLabels],
        cursor: int,
        *,
        finished: bool,
    ) -> bool:
        """Store one batch's text labels and move the cursor past it, in one transaction; False
        (and nothing written) if the lease was lost."""
        now = utcnow()
        values: dict[str, Any] = {
            "relabel_cursor": cursor,
            "relabelled": _LIST.relabelled + len(labels),
        }
        if finished:
            values.update(relabel_finished_at=now, relabel_owner=None, relabel_lease_until=None)
        with self._engine.begin() as connection:
            held = connection.execute(
                sa.update(TERM_LISTS)
                .where((_LIST.id == list_id) & (_LIST.relabel_owner == owner))
                .values(**values)
            ).rowcount
            if held != 1:
                connection.rollback()
                return False
            _write_labels(connection, version, labels)
        return True

    def label(self, version: str, labels: Sequence[TextLabels]) -> None:
        with self._engine.begin() as connection:
            _write_labels(connection, version, labels)


def _write_labels(connection: sa.Connection, version: str, labels: Sequence[TextLabels]) -> None:
    if not labels:
        return
    connection.execute(
        sa.update(MEDIA_ITEMS)
        .where(
            (_ITEM.id == sa.bindparam("item_id"))
            & _ITEM.search_text.is_not_distinct_from(sa.bindparam("seen"))
        )
        .values(
            matched_terms=sa.bindparam("terms", type_=sa.JSON),
            text_sensitive=sa.bindparam("flagged"),
            terms_version=version,
        ),
        [
            {
                "item_id": label.item_id,
                "terms": label.matched_terms or None,
                "flagged": bool(label.matched_terms),
                "seen": label.seen,
            }
            for label in labels
        ],
    )


def _stale(version: str) -> sa.ColumnElement[bool]:
    # Two ranges rather than `!=`, so the index on terms_version answers it.
    column = _ITEM.terms_version
    return column.is_(None) | (column < version) | (column > version)
