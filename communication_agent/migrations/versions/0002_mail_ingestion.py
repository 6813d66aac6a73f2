"""mail ingestion: mailbox sync state and credentials, raw sources, attachments, quarantine,
sync errors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "quarantined_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_quarantined_messages_mailbox_id_mailboxes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_messages")),
        sa.UniqueConstraint(
            "mailbox_id",
            "provider_message_id",
            name=op.f("uq_quarantined_messages_mailbox_id_provider_message_id"),
        ),
    )
    with op.batch_alter_table("quarantined_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantined_messages_mailbox_id"), ["mailbox_id"], unique=False
        )

    op.create_table(
        "sync_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_sync_errors_mailbox_id_mailboxes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_errors")),
        sa.UniqueConstraint(
            "mailbox_id",
            "provider_message_id",
            name=op.f("uq_sync_errors_mailbox_id_provider_message_id"),
        ),
    )
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_errors_mailbox_id"), ["mailbox_id"], unique=False)

    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_id", sa.String(length=998), nullable=True),
        sa.Column("part_index", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_attachments_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachments_message_id"), ["message_id"], unique=False)

    op.create_table(
        "message_sources",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_sources_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_message_sources")),
    )
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "config",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )
        batch_op.add_column(sa.Column("credentials", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("token_state", sa.String(length=20), nullable=False, server_default="none")
        )
        batch_op.add_column(sa.Column("token_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sync_checkpoint", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("last_sync_started_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_sync_succeeded_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("consecutive_errors", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:

    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("last_error")
        batch_op.drop_column("consecutive_errors")
        batch_op.drop_column("last_sync_succeeded_at")
        batch_op.drop_column("last_sync_started_at")
        batch_op.drop_column("sync_checkpoint")
        batch_op.drop_column("token_error")
        batch_op.drop_column("token_state")
        batch_op.drop_column("credentials")
        batch_op.drop_column("config")

    op.drop_table("message_sources")
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachments_message_id"))

    op.drop_table("attachments")
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_errors_mailbox_id"))

    op.drop_table("sync_errors")
    with op.batch_alter_table("quarantined_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_messages_mailbox_id"))

    op.drop_table("quarantined_messages")
