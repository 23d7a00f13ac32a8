"""Sensitivity labels, the term lists, full-text search, user reports and reviewer decisions.

Search is the backend's own full-text index: on SQLite an external-content FTS5 table kept in step
by triggers, on PostgreSQL a stored ``tsvector`` column with a GIN index. Neither is declared on the
models: a later SQLite batch migration of ``media_items`` (which rebuilds the table) drops the
triggers and must create them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mediaguard.store.search import search_text

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLAGS = ("text_sensitive", "image_sensitive", "reported_sensitive")

# Both index ``search_text``: title, description and tags normalised as the term matcher
# normalises them (case and accents folded), so both backends find the same words.
_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE media_search USING fts5(search_text, content='media_items', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER media_search_insert AFTER INSERT ON media_items BEGIN "
    "INSERT INTO media_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER media_search_delete AFTER DELETE ON media_items BEGIN "
    "INSERT INTO media_search(media_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER media_search_update AFTER UPDATE OF search_text ON media_items BEGIN "
    "INSERT INTO media_search(media_search, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO media_search(rowid, search_text) VALUES (new.id, new.search_text); END",
    "INSERT INTO media_search(media_search) VALUES ('rebuild')",
)
_PG_SEARCH = (
    "ALTER TABLE media_items ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "to_tsvector('simple', coalesce(search_text, ''))) STORED",
    "CREATE INDEX ix_media_items_search_vector ON media_items USING gin (search_vector)",
)


def _fill_search_text() -> None:
    items = sa.table(
        "media_items",
        sa.column("id", sa.Integer()),
        sa.column("title", sa.Text()),
        sa.column("description", sa.Text()),
        sa.column("tags", sa.JSON()),
        sa.column("search_text", sa.Text()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(items.c.id, items.c.title, items.c.description, items.c.tags)
    )
    for row in rows.all():
        connection.execute(
            sa.update(items)
            .where(items.c.id == row.id)
            .values(search_text=search_text(row.title, row.description, row.tags))
        )


def upgrade() -> None:
    with op.batch_alter_table("media_items") as batch:
        for name in _FLAGS:
            batch.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        batch.add_column(sa.Column("matched_terms", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("terms_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("deindexed", sa.String(32), nullable=True))
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor", existing_type=sa.String(100), type_=sa.String(255))
    _fill_search_text()
    op.create_index("ix_media_items_terms_version", "media_items", ["terms_version"])
    op.create_index(
        "ix_audit_log_subject_type_subject_id", "audit_log", ["subject_type", "subject_id"]
    )
    op.create_table(
        "term_lists",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("relabel_cursor", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("relabelled", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("relabel_owner", sa.String(64), nullable=True),
        sa.Column("relabel_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("relabel_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_term_lists"),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reporter", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_reports_item_id_media_items",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_reports_item_id_status", "reports", ["item_id", "status"])
    op.create_index("ix_reports_reporter_created_at", "reports", ["reporter", "created_at"])
    op.create_index("ix_reports_status_created_at", "reports", ["status", "created_at"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_table(
        "decision_items",
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", "item_id", name="pk_decision_items"),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name="fk_decision_items_decision_id_decisions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_decision_items_item_id_media_items",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_decision_items_item_id", "decision_items", ["item_id"])
    op.create_table(
        "review_locks",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_review_locks"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_review_locks_item_id_media_items",
            ondelete="CASCADE",
        ),
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_SEARCH if dialect == "sqlite" else _PG_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER media_search_{trigger}")
        op.execute("DROP TABLE media_search")
    else:
        op.execute("DROP INDEX ix_media_items_search_vector")
        op.execute("ALTER TABLE media_items DROP COLUMN search_vector")
    for table in ("review_locks", "decision_items", "decisions", "reports", "term_lists"):
        op.drop_table(table)
    op.drop_index("ix_audit_log_subject_type_subject_id", "audit_log")
    op.drop_index("ix_media_items_terms_version", "media_items")
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor", existing_type=sa.String(255), type_=sa.String(100))
    with op.batch_alter_table("media_items") as batch:
        for name in ("search_text", "deindexed", "terms_version", "matched_terms", *_FLAGS):
            batch.drop_column(name)
