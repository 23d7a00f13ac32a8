"""Catalogue search on the backend's own full-text index, filtered by the stored labels.

Both index ``search_text``, the item's title, description and tags normalised as the term
matcher normalises them, so the two backends find the same words, accents folded. SQLite: the
FTS5 table ``media_search`` (ranked by bm25). PostgreSQL: the ``search_vector`` column with its
GIN index (ranked by ``ts_rank``). Both are created by migration 0004. The
sensitivity filter reads the flags stored on each item, so excluding sensitive results costs a
column test per candidate, whatever the size of the term list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from mediaguard.signals.terms import normalize
from mediaguard.store.db import reader
from mediaguard.store.items import ItemInfo
from mediaguard.store.models import MEDIA_ITEMS

_ITEM = MEDIA_ITEMS.c
_FTS = sa.table("media_search", sa.column("rowid"), sa.column("rank"))
_PG_VECTOR: sa.ColumnElement[object] = sa.literal_column("media_items.search_vector")


@dataclass(frozen=True)
class SearchHits:
    total: int
    items: list[ItemInfo]


def publicly_visible() -> sa.ColumnElement[bool]:
    """Processed, scored, labelled against the term list (text changed since is not), matched
    no bank and not deindexed by a reviewer."""
    return (
        (_ITEM.state == "done")
        & _ITEM.nsfw_score.is_not(None)
        & _ITEM.terms_version.is_not(None)
        & (_ITEM.match_status == "no_match")
        & _ITEM.deindexed.is_(None)
    )


def not_sensitive() -> sa.ColumnElement[bool]:
    return ~(_ITEM.text_sensitive | _ITEM.image_sensitive | _ITEM.reported_sensitive)


def query_words(text: str) -> list[str]:
    """The words of a search query, normalised like ``search_text``; everything else (FTS
    operators, quotes) is dropped."""
    return normalize(text).split()


def search_text(title: str | None, description: str | None, tags: Sequence[str] | None) -> str:
    """What the full-text index holds for an item: its words, case and accents folded."""
    return "\n".join(normalize(part) for part in (title or "", description or "", *(tags or ())))


class SearchRepository:
    def __init__(self, engine: sa.Engine) -> None:
        self._reader = reader(engine)
        self._dialect = engine.dialect.name

    def search(
        self,
        text: str,
        *,
        include_sensitive: bool,
        offset: int,
        limit: int,
        extra: sa.ColumnElement[bool] | None = None,
    ) -> SearchHits:
        """Public items whose title, description or tags hold every word of ``text`` (all
        public items, newest first, when it has none), best first. ``extra`` narrows further
        (the benchmark's query-time exclusion)."""
        conditions: list[sa.ColumnElement[bool] | sa.TextClause] = [publicly_visible()]
        if not include_sensitive:
            conditions.append(not_sensitive())
        if extra is not None:
            conditions.append(extra)
        words = query_words(text)
        source: sa.FromClause = MEDIA_ITEMS
        order: list[sa.ColumnElement[object]]
        if not words:
            order = [_ITEM.id.desc()]
        elif self._dialect == "sqlite":
            source = MEDIA_ITEMS.join(_FTS, _FTS.c.rowid == _ITEM.id)
            conditions.append(sa.text("media_search MATCH :fts").bindparams(fts=fts_query(words)))
            order = [_FTS.c.rank, _ITEM.id]
        else:
            tsquery = sa.func.plainto_tsquery(sa.literal_column("'simple'"), " ".join(words))
            conditions.append(_PG_VECTOR.op("@@")(tsquery))
            order = [sa.func.ts_rank(_PG_VECTOR, tsquery).desc(), _ITEM.id]
        where = sa.and_(*conditions)
        page = (
            sa.select(*MEDIA_ITEMS.c)
            .select_from(source)
            .where(where)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(source).where(where)
        with self._reader.connect() as connection:
            total = int(connection.execute(count).scalar_one())
            rows = connection.execute(page).all() if offset < total else []
        return SearchHits(total, [ItemInfo(**row._mapping) for row in rows])

    def public_item(self, item_id: int) -> ItemInfo | None:
        """The item if search may serve it, by the same rule as ``search``."""
        query = sa.select(*MEDIA_ITEMS.c).where((_ITEM.id == item_id) & publicly_visible())
        with self._reader.connect() as connection:
            row = connection.execute(query).first()
        return ItemInfo(**row._mapping) if row is not None else None


def fts_query(words: list[str]) -> str:
    """Every word, each quoted so that FTS5 reads it as a plain token, never as syntax."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)
