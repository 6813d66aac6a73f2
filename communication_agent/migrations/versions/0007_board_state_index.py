"""board counts: a (state) index in place of (state, id)

The board counts tickets per state; four distinct keys deduplicate into a tiny index, so
PostgreSQL counts 100,000 tickets with an index-only scan. No query orders by (state, id) any
more (the board's columns use (state, updated_at, id) from 0005).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tickets_state_id", table_name="tickets")
    op.create_index("ix_tickets_state", "tickets", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tickets_state", table_name="tickets")
    op.create_index("ix_tickets_state_id", "tickets", ["state", "id"], unique=False)
