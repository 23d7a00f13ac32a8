"""The upload pipeline: item state, lease and retry bookkeeping, metadata, signals, and the bytes
of uploads waiting for a worker.

An item is now one notification: (platform_id, intake_key), where the key is the content's SHA-256
for uploaded bytes, the SHA-1 the platform gave, or a digest of the URL. The old unique
(platform_id, sha256) could not hold once a URL item learns its SHA-256 only when processed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMPS = (
    "queued_at",
    "enqueued_at",
    "next_attempt_at",
    "lease_until",
    "started_at",
    "finished_at",
)


def upgrade() -> None:
    with op.batch_alter_table("media_items") as batch:
        batch.add_column(sa.Column("intake_key", sa.String(80), nullable=True))
        batch.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="check"))
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="done"))
        batch.add_column(sa.Column("title", sa.Text(), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("uploader", sa.String(255), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("error_code", sa.String(64), nullable=True))
        batch.add_column(sa.Column("error_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        for name in _TIMESTAMPS:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("nsfw_score", sa.Double(), nullable=True))
        batch.add_column(sa.Column("nsfw_model_version", sa.String(200), nullable=True))
        batch.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("media_format", sa.String(16), nullable=True))
    op.execute("UPDATE media_items SET intake_key = 'sha256:' || sha256")
    with op.batch_alter_table("media_items") as batch:
        batch.alter_column("intake_key", existing_type=sa.String(80), nullable=False)
        batch.drop_constraint("uq_media_items_platform_id_sha256", type_="unique")
        batch.create_unique_constraint(
            "uq_media_items_platform_id_intake_key", ["platform_id", "intake_key"]
        )
        batch.create_index("ix_media_items_state_next_attempt_at", ["state", "next_attempt_at"])
        batch.create_index("ix_media_items_platform_id", ["platform_id"])
    op.create_table(
        "media_content",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_media_content"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["media_items.id"],
            name="fk_media_content_item_id_media_items",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("media_content")
    with op.batch_alter_table("media_items") as batch:
        batch.drop_index("ix_media_items_platform_id")
        batch.drop_index("ix_media_items_state_next_attempt_at")
        batch.drop_constraint("uq_media_items_platform_id_intake_key", type_="unique")
        batch.create_unique_constraint(
            "uq_media_items_platform_id_sha256", ["platform_id", "sha256"]
        )
        for name in (
            "media_format",
            "height",
            "width",
            "nsfw_model_version",
            "nsfw_score",
            *_TIMESTAMPS,
            "lease_owner",
            "error_detail",
            "error_code",
            "attempts",
            "uploader",
            "tags",
            "description",
            "title",
            "state",
            "origin",
            "intake_key",
        ):
            batch.drop_column(name)
