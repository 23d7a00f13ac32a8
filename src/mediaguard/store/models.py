"""The schema: every table mediaguard stores, declared once on one ``MetaData``.

Repositories run SQLAlchemy Core statements against the ``Table`` objects exported at the bottom
(``SCORES``, ``API_TOKENS``); the mapped classes exist to declare the schema with typed columns.
Migrations in ``migrations/versions`` spell the same DDL out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations (and SQLite batch rebuilds) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC and come back with ``tzinfo=UTC`` attached. Naive datetimes are refused on the way in.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: mediaguard stores UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class Score(Base):
    """One model's score of one file, keyed by content digest and model version."""

    __tablename__ = "scores"
    __table_args__ = (sa.UniqueConstraint("sha256", "model_version"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    sha1: Mapped[str] = mapped_column(sa.String(40), index=True)
    model: Mapped[str] = mapped_column(sa.String(64))
    model_version: Mapped[str] = mapped_column(sa.String(200))
    score: Mapped[float] = mapped_column(sa.Double)
    width: Mapped[int] = mapped_column(sa.Integer)
    height: Mapped[int] = mapped_column(sa.Integer)
    media_format: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """An API token. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        # Names are unique among active tokens; a revoked token's name may be reused.
        sa.Index(
            "uq_api_tokens_name_active",
            "name",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Bank(Base):
    """A named list of known-bad hashes, with its category, PDQ threshold and action policy."""

    __tablename__ = "banks"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    category: Mapped[str] = mapped_column(sa.String(32))
    pdq_threshold: Mapped[int] = mapped_column(sa.Integer)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    # Comma-separated action names; NULL means the category's default policy.
    actions: Mapped[str | None] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    exchange: Mapped[str | None] = mapped_column(sa.String(64))
    exchange_config: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    exchange_checkpoint: Mapped[str | None] = mapped_column(sa.Text)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BankContent(Base):
    """One banked piece of content: the hashes of one image, with its metadata."""

    __tablename__ = "bank_content"
    __table_args__ = (sa.Index("ix_bank_content_bank_id_external_id", "bank_id", "external_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(sa.ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    note: Mapped[str | None] = mapped_column(sa.Text)
    content_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", sa.JSON)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    source: Mapped[str] = mapped_column(sa.String(32))
    # The exchange's own id for this content (NCMEC: "<esp id>-<entry id>"), when it has one.
    external_id: Mapped[str | None] = mapped_column(sa.String(255))
    media_url: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BankSignal(Base):
    """One hash of one bank content. A hash appears at most once per bank."""

    __tablename__ = "bank_signals"
    __table_args__ = (
        sa.UniqueConstraint("bank_id", "signal_type", "value"),
        sa.Index("ix_bank_signals_signal_type_value", "signal_type", "value"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.ForeignKey("bank_content.id", ondelete="CASCADE"), index=True
    )
    bank_id: Mapped[int] = mapped_column(sa.ForeignKey("banks.id", ondelete="CASCADE"))
    signal_type: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[str] = mapped_column(sa.String(64))
    quality: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BankChange(Base):
    """The change feed every process follows to keep its in-memory PDQ index current.

    A row names a range of signal ids whose state changed (added, removed, or their bank deleted):
    a follower re-reads that range from the database, which makes replaying a row harmless.
    """

    __tablename__ = "bank_changes"

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    bank_id: Mapped[int] = mapped_column(sa.Integer)
    first_signal_id: Mapped[int] = mapped_column(sa.Integer)
    last_signal_id: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class MediaItem(Base):
    """One notification of one platform file: (platform_id, intake_key), where the key is the
    content's SHA-256, the SHA-1 the platform gave, or a digest of the URL."""

    __tablename__ = "media_items"
    __table_args__ = (
        sa.UniqueConstraint("platform_id", "intake_key"),
        sa.Index("ix_media_items_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    intake_key: Mapped[str] = mapped_column(sa.String(80))
    origin: Mapped[str] = mapped_column(
        sa.String(16), server_default="check"
    )  # check, api, backfill
    media_url: Mapped[str | None] = mapped_column(sa.Text)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    sha1: Mapped[str | None] = mapped_column(sa.String(40), index=True)
    md5: Mapped[str | None] = mapped_column(sa.String(32))
    pdq: Mapped[str | None] = mapped_column(sa.String(64))
    pdq_quality: Mapped[int | None] = mapped_column(sa.Integer)
    # NULL: never checked successfully; then "match" or "no_match".
    match_status: Mapped[str | None] = mapped_column(sa.String(16))
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # queued -> processing -> done | failed; a transient failure goes back to queued.
    state: Mapped[str] = mapped_column(sa.String(16), server_default="done")
    title: Mapped[str | None] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)
    tags: Mapped[list[str] | None] = mapped_column(sa.JSON)
    uploader: Mapped[str | None] = mapped_column(sa.String(255))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_detail: Mapped[str | None] = mapped_column(sa.Text)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nsfw_score: Mapped[float | None] = mapped_column(sa.Double)
    nsfw_model_version: Mapped[str | None] = mapped_column(sa.String(200))
    width: Mapped[int | None] = mapped_column(sa.Integer)
    height: Mapped[int | None] = mapped_column(sa.Integer)
    media_format: Mapped[str | None] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The parts of ``sensitivity``, each written by its own step in one UPDATE, so the term
    # re-evaluation, a worker's verdict and a reviewer's decision never overwrite each other.
    text_sensitive: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    image_sensitive: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    reported_sensitive: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # The terms the metadata matched (for reviewers only) and the term list's version.
    matched_terms: Mapped[list[str] | None] = mapped_column(sa.JSON)
    terms_version: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    # deindexed_sensitive or deindexed_copyright while a reviewer's deindex decision stands.
    deindexed: Mapped[str | None] = mapped_column(sa.String(32))
    # Title, description and tags normalised for full-text search (store.search.search_text).
    search_text: Mapped[str | None] = mapped_column(sa.Text)


class MediaContent(Base):
    """The bytes of an upload until a worker has processed it; deleted with the verdict."""

    __tablename__ = "media_content"

    item_id: Mapped[int] = mapped_column(
        sa.ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ItemMatch(Base):
    """An item matched a bank: the first time it did, with the closest match's details."""

    __tablename__ = "item_matches"
    __table_args__ = (sa.UniqueConstraint("item_id", "bank_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("media_items.id", ondelete="CASCADE"))
    bank_id: Mapped[int] = mapped_column(sa.Integer)
    bank_name: Mapped[str] = mapped_column(sa.String(100))
    category: Mapped[str] = mapped_column(sa.String(32))
    signal_type: Mapped[str] = mapped_column(sa.String(16))
    distance: Mapped[int] = mapped_column(sa.Integer)
    bank_content_id: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActionRecord(Base):
    """One action for one item and bank. The unique key is what makes it run at most once."""

    __tablename__ = "actions"
    __table_args__ = (sa.UniqueConstraint("item_id", "bank_id", "action"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("media_items.id", ondelete="CASCADE"))
    bank_id: Mapped[int] = mapped_column(sa.Integer)
    action: Mapped[str] = mapped_column(sa.String(16))
    mode: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    detail: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """What was done, to what, why, by whom, when, and with what result. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_subject_type_subject_id", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(sa.String(255))
    event: Mapped[str] = mapped_column(sa.String(64))
    subject_type: Mapped[str] = mapped_column(sa.String(32))
    subject_id: Mapped[str] = mapped_column(sa.String(255))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[str] = mapped_column(sa.String(32))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class TermListRecord(Base):
    """A version of the sensitive-term list, and how far re-evaluating the items against it got.

    The newest row is the list in force. Any process may load a new version; one process at a
    time (the lease holder) walks the items in id order, so a restart resumes at the cursor.
    """

    __tablename__ = "term_lists"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # Not unique: a list changed back to an earlier version is a new row, and in force again.
    version: Mapped[str] = mapped_column(sa.String(64))
    terms: Mapped[list[str]] = mapped_column(sa.JSON)
    source: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    relabel_cursor: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    relabelled: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    relabel_owner: Mapped[str | None] = mapped_column(sa.String(64))
    relabel_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    relabel_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Report(Base):
    """A user's report of an item: pending until a reviewer's decision settles it."""

    __tablename__ = "reports"
    __table_args__ = (
        sa.Index("ix_reports_item_id_status", "item_id", "status"),
        sa.Index("ix_reports_reporter_created_at", "reporter", "created_at"),
        sa.Index("ix_reports_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("media_items.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str | None] = mapped_column(sa.Text)
    # "token:<name>" or "ip:<address>": whom the rate limit counts.
    reporter: Mapped[str] = mapped_column(sa.String(255))
    # pending, or the action of the decision that settled it.
    status: Mapped[str] = mapped_column(sa.String(32))
    decision_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Decision(Base):
    """A reviewer's decision over one or more items (a bulk decision is one row)."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(sa.String(32))
    reviewer: Mapped[str] = mapped_column(sa.String(100))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DecisionItem(Base):
    __tablename__ = "decision_items"

    decision_id: Mapped[int] = mapped_column(
        sa.ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        sa.ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ReviewLock(Base):
    """A reviewer's soft lock on an item: nobody else is given it until ``until``."""

    __tablename__ = "review_locks"

    item_id: Mapped[int] = mapped_column(
        sa.ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True
    )
    reviewer: Mapped[str] = mapped_column(sa.String(100))
    until: Mapped[datetime] = mapped_column(UTCDateTime)


def outside_models(name: str | None, type_: str) -> bool:
    """The full-text search objects migration 0004 creates by hand (the FTS5 table and its
    shadow tables on SQLite; the tsvector column and its GIN index on PostgreSQL)."""
    if type_ == "table":
        return bool(name and name.startswith("media_search"))
    return name in ("search_vector", "ix_media_items_search_vector")


def _table(model: type[Base]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


SCORES = _table(Score)
API_TOKENS = _table(ApiToken)
BANKS = _table(Bank)
BANK_CONTENT = _table(BankContent)
BANK_SIGNALS = _table(BankSignal)
BANK_CHANGES = _table(BankChange)
MEDIA_ITEMS = _table(MediaItem)
MEDIA_CONTENT = _table(MediaContent)
ITEM_MATCHES = _table(ItemMatch)
ACTIONS = _table(ActionRecord)
AUDIT_LOG = _table(AuditEntry)
TERM_LISTS = _table(TermListRecord)
REPORTS = _table(Report)
DECISIONS = _table(Decision)
DECISION_ITEMS = _table(DecisionItem)
REVIEW_LOCKS = _table(ReviewLock)
