"""Scores keyed by (sha256, model_version): write once, read by either digest."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mediaguard.errors import InvalidInputError
from mediaguard.store.db import reader
from mediaguard.store.models import SCORES

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")

# Digests per IN list: well under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
_CHUNK = 1000

_COLUMNS = (
    SCORES.c.sha256,
    SCORES.c.sha1,
    SCORES.c.model,
    SCORES.c.model_version,
    SCORES.c.score,
    SCORES.c.width,
    SCORES.c.height,
    SCORES.c.media_format,
    SCORES.c.created_at,
)


@dataclass(frozen=True)
class StoredScore:
    """One score as stored. Digests are lowercase hex; ``model_version`` is opaque here;
    ``created_at`` is timezone-aware (UTC when read back)."""

    sha256: str
    sha1: str
    model: str
    model_version: str
    score: float
    width: int
    height: int
    media_format: str
    created_at: datetime


def _from_row(row: Sequence[Any]) -> StoredScore:
    return StoredScore(*row)


class ScoreRepository:
    """Statements are built once here; SQLAlchemy caches their compiled form per engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._get = sa.select(*_COLUMNS).where(
            SCORES.c.sha256 == sa.bindparam("sha256"),
            SCORES.c.model_version == sa.bindparam("model_version"),
        )
        # One IN query per digest kind; rows from both are merged and sorted here.
        digests = sa.bindparam("digests", type_=sa.String, expanding=True)
        self._by_sha1 = sa.select(SCORES.c.id, *_COLUMNS).where(SCORES.c.sha1.in_(digests))
        self._by_sha256 = sa.select(SCORES.c.id, *_COLUMNS).where(SCORES.c.sha256.in_(digests))
        # A single digest: plain equality compiles once; an expanding IN is re-rendered per call.
        self._one_sha1 = sa.select(SCORES.c.id, *_COLUMNS).where(
            SCORES.c.sha1 == sa.bindparam("digest")
        )
        self._one_sha256 = sa.select(SCORES.c.id, *_COLUMNS).where(
            SCORES.c.sha256 == sa.bindparam("digest")
        )
        self._count = sa.select(sa.func.count()).select_from(SCORES)
        self._insert = _insert_or_ignore(engine.dialect.name).returning(*_COLUMNS)

    def get(self, sha256: str, model_version: str) -> StoredScore | None:
        with self._reader.connect() as connection:
            row = connection.execute(
                self._get, {"sha256": sha256, "model_version": model_version}
            ).first()
        return None if row is None else _from_row(row)

    def put(self, score: StoredScore) -> StoredScore:
        """Store ``score`` unless its (sha256, model_version) is known; return the stored row.

        The first write wins and is never changed: concurrent writers of one key all get it.
        """
        return self.put_many([score])[0]

    def put_many(self, scores: Sequence[StoredScore]) -> list[StoredScore]:
        """``put`` for many scores in one transaction: one commit for a whole batch."""
        with self._engine.begin() as connection:
            return [self.put_in(connection, score) for score in scores]

    def put_in(self, connection: sa.Connection, score: StoredScore) -> StoredScore:
        """``put`` inside a caller's transaction."""
        _check(score)
        row = connection.execute(self._insert, dataclasses.asdict(score)).first()
        if row is None:
            row = connection.execute(
                self._get, {"sha256": score.sha256, "model_version": score.model_version}
            ).one()
        return _from_row(row)

    def find(self, *, sha1: Sequence[str] = (), sha256: Sequence[str] = ()) -> list[StoredScore]:
        """Every score (all model versions) of files matching any digest given, newest first.

        Digests are lowercase hex; unknown ones are ignored.
        """
        rows: dict[int, Sequence[Any]] = {}
        with self._reader.connect() as connection:
            for statement, params in self._find_statements(sha1, sha256):
                for row in connection.execute(statement, params):
                    rows[row[0]] = row
        ordered = sorted(rows.values(), key=lambda row: (row[-1], row[0]), reverse=True)
        return [_from_row(row[1:]) for row in ordered]

    def _find_statements(
        self, sha1: Sequence[str], sha256: Sequence[str]
    ) -> Iterable[tuple[sa.Select[Any], dict[str, Any]]]:
        if len(sha1) + len(sha256) == 1:
            yield (self._one_sha1 if sha1 else self._one_sha256), {"digest": [*sha1, *sha256][0]}
            return
        for statement, digests in ((self._by_sha1, sha1), (self._by_sha256, sha256)):
            for chunk in _chunks(digests):
                yield statement, {"digests": chunk}

    def count(self) -> int:
        with self._reader.connect() as connection:
            return int(connection.execute(self._count).scalar_one())


def _insert_or_ignore(dialect: str) -> sqlite.Insert | postgresql.Insert:
    key = [SCORES.c.sha256, SCORES.c.model_version]
    if dialect == "sqlite":
        return sqlite.insert(SCORES).on_conflict_do_nothing(index_elements=key)
    if dialect == "postgresql":
        return postgresql.insert(SCORES).on_conflict_do_nothing(index_elements=key)
    raise ValueError(f"unsupported database backend {dialect!r}")


def _chunks(digests: Iterable[str]) -> Iterable[list[str]]:
    unique = list(dict.fromkeys(digests))
    for start in range(0, len(unique), _CHUNK):
        yield unique[start : start + _CHUNK]


def _check(score: StoredScore) -> None:
    if not _SHA256.fullmatch(score.sha256):
        raise InvalidInputError(f"sha256 must be 64 lowercase hex digits, got {score.sha256!r}")
    if not _SHA1.fullmatch(score.sha1):
        raise InvalidInputError(f"sha1 must be 40 lowercase hex digits, got {score.sha1!r}")
    if score.created_at.tzinfo is None or score.created_at.utcoffset() is None:
        raise InvalidInputError("created_at must be timezone-aware")
    if not score.model or not score.model_version or not score.media_format:
        raise InvalidInputError("model, model_version and media_format must not be empty")
