"""Storage: the ``Store`` facade over one database, its repositories and its migrations.

::

    store = Store(settings.database_url)
    store.upgrade()                        # alembic upgrade head; safe to run on every start
    store.scores.put(StoredScore(...))
    store.tokens.verify(plaintext)
"""

from __future__ import annotations

import sqlalchemy as sa

from mediaguard.errors import NotReadyError
from mediaguard.store import db
from mediaguard.store.audit import AuditEvent, AuditRepository
from mediaguard.store.banks import BankRepository
from mediaguard.store.items import ItemRepository
from mediaguard.store.media import MediaRepository
from mediaguard.store.review import ReviewRepository
from mediaguard.store.scores import ScoreRepository, StoredScore
from mediaguard.store.search import SearchRepository
from mediaguard.store.terms import TermListRepository
from mediaguard.store.tokens import ROLES, Role, TokenInfo, TokenRepository

__all__ = [
    "ROLES",
    "AuditEvent",
    "AuditRepository",
    "BankRepository",
    "ItemRepository",
    "MediaRepository",
    "Role",
    "ScoreRepository",
    "Store",
    "StoredScore",
    "TokenInfo",
    "TokenRepository",
]


class Store:
    """One database: its engine, its repositories and its schema version."""

    def __init__(self, database_url: str) -> None:
        self.engine: sa.Engine = db.create_engine(database_url)
        self.scores = ScoreRepository(self.engine)
        self.tokens = TokenRepository(self.engine)
        self.banks = BankRepository(self.engine)
        self.items = ItemRepository(self.engine)
        self.media = MediaRepository(self.engine)
        self.audit = AuditRepository(self.engine)
        self.terms = TermListRepository(self.engine)
        self.search = SearchRepository(self.engine)
        self.review = ReviewRepository(self.engine)

    @property
    def is_embedded(self) -> bool:
        """True for a SQLite file in this process; false for a database across a network."""
        return self.engine.dialect.name == "sqlite"

    def upgrade(self) -> None:
        """Migrate to the newest schema. Idempotent, and concurrent callers wait for each other."""
        db.upgrade(self.engine)

    def current_revision(self) -> str | None:
        return db.current_revision(self.engine)

    def is_current(self) -> bool:
        return self.current_revision() == db.head_revision()

    def ping(self) -> None:
        """Raise ``NotReadyError`` unless the database answers ``SELECT 1``."""
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise NotReadyError(
                f"database {self.engine.url.render_as_string(hide_password=True)} "
                f"does not answer: {_first_line(getattr(exc, 'orig', None) or exc)}"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
