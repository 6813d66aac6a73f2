"""review and sending: draft versions, approval, outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "draft_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("author_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_user_id"], ["users.id"], name=op.f("fk_draft_versions_author_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["draft_id"], ["drafts.id"], name=op.f("fk_draft_versions_draft_id_drafts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draft_versions")),
        sa.UniqueConstraint("draft_id", "version", name=op.f("uq_draft_versions_draft_id_version")),
    )
    with op.batch_alter_table("draft_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_draft_versions_draft_id"), ["draft_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message_id_header", sa.String(length=255), nullable=True),
        sa.Column("send_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["draft_id"], ["drafts.id"], name=op.f("fk_outbox_draft_id_drafts")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_outbox_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("message_id_header", name=op.f("uq_outbox_message_id_header")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_draft_id"), ["draft_id"], unique=False)
        batch_op.create_index("ix_outbox_status_due", ["status", "send_after"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_ticket_id"), ["ticket_id"], unique=False)

    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proposed_body", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_editor_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("approved_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("approved_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("approved_state", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("approved_last_message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("edit_distance", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_drafts_approved_last_message_id_messages"),
            "messages",
            ["approved_last_message_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_drafts_approved_by_id_users"), "users", ["approved_by_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_drafts_last_editor_id_users"), "users", ["last_editor_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_drafts_last_editor_id_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_drafts_approved_by_id_users"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_drafts_approved_last_message_id_messages"), type_="foreignkey"
        )
        batch_op.drop_column("sent_at")
        batch_op.drop_column("edit_distance")
        batch_op.drop_column("approved_last_message_id")
        batch_op.drop_column("approved_state")
        batch_op.drop_column("approved_hash")
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by_id")
        batch_op.drop_column("last_editor_id")
        batch_op.drop_column("proposed_body")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_ticket_id"))
        batch_op.drop_index("ix_outbox_status_due")
        batch_op.drop_index(batch_op.f("ix_outbox_draft_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("draft_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_draft_versions_draft_id"))

    op.drop_table("draft_versions")
