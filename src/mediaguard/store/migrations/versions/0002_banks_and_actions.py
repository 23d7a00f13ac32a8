"""Hash banks, their change feed, media items, matches, actions and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "banks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("pdq_threshold", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("actions", sa.String(100), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("exchange", sa.String(64), nullable=True),
        sa.Column("exchange_config", sa.JSON(), nullable=True),
        sa.Column("exchange_checkpoint", sa.Text(), nullable=True),
        _timestamp("fetched_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_banks"),
        sa.UniqueConstraint("name", name="uq_banks_name"),
    )
    op.create_table(
        "bank_content",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("media_url", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_bank_content"),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name="fk_bank_content_bank_id_banks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_bank_content_bank_id", "bank_content", ["bank_id"])
    op.create_index(
        "ix_bank_content_bank_id_external_id", "bank_content", ["bank_id", "external_id"]
    )
    op.create_table(
        "bank_signals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("content_id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_bank_signals"),
        sa.UniqueConstraint(
            "bank_id", "signal_type", "value", name="uq_bank_signals_bank_id_signal_type_value"
        ),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["bank_content.id"],
            name="fk_bank_signals_content_id_bank_content",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["banks.id"], name="fk_bank_signals_bank_id_banks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_bank_signals_content_id", "bank_signals", ["content_id"])
    op.create_index("ix_bank_signals_signal_type_value", "bank_signals", ["signal_type", "value"])
    op.create_table(
        "bank_changes",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("first_signal_id", sa.Integer(), nullable=False),
        sa.Column("last_signal_id", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("seq", name="pk_bank_changes"),
    )
    op.create_index("ix_bank_changes_created_at", "bank_changes", ["created_at"])
    op.create_table(
        "media_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform_id", sa.String(255), nullable=False),
        sa.Column("media_url", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("sha1", sa.String(40), nullable=True),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("pdq", sa.String(64), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("match_status", sa.String(16), nullable=True),
        _timestamp("last_checked_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_media_items"),
        sa.UniqueConstraint("platform_id", "sha256", name="uq_media_items_platform_id_sha256"),
    )
    op.create_index("ix_media_items_sha1", "media_items", ["sha1"])
    op.create_index("ix_media_items_sha256", "media_items", ["sha256"])
    op.create_table(
        "item_matches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("bank_name", sa.String(100), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("bank_content_id", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_item_matches"),
        sa.UniqueConstraint("item_id", "bank_id", name="uq_item_matches_item_id_bank_id"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_item_matches_item_id_media_items",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("bank_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
        sa.UniqueConstraint(
            "item_id", "bank_id", "action", name="uq_actions_item_id_bank_id_action"
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_actions_item_id_media_items",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_actions_status", "actions", ["status"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _timestamp("at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    for table in (
        "audit_log",
        "actions",
        "item_matches",
        "media_items",
        "bank_changes",
        "bank_signals",
        "bank_content",
        "banks",
    ):
        op.drop_table(table)
