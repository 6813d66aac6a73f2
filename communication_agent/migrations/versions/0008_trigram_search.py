"""ticket search: trigram indexes on PostgreSQL

The search box matches text anywhere in a ticket's subject, its customer's address and name,
and its messages (`ILIKE '%words%'`). Without an index PostgreSQL reads every message body
on every search: 0.5 s for the board at 100,000 tickets, 2.8 s under load. GIN trigram
indexes let each part find its matches directly. The `pg_trgm` extension ships with
PostgreSQL and is "trusted" (13 and later): the database's owner may create it.

Creating the extension needs the CREATE privilege on the database; without it the migration
stops with the statement an administrator can run instead. The indexes are built in the
migration's transaction, which holds off writes to those tables while it runs (about 15 s for
100,000 messages; an installation much larger than that may prefer to build them beforehand
with `CREATE INDEX CONCURRENTLY` under these names). SQLite gets nothing: its searches scan.
Downgrading drops the indexes and leaves the extension, which something else may use.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from communication_agent.core.migrations import MissingPrerequisiteError

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_messages_search_trgm": ("messages", ("body_text", "subject")),
    "ix_tickets_subject_trgm": ("tickets", ("subject",)),
    "ix_contacts_search_trgm": ("contacts", ("email", "name")),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    installed = bind.scalar(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    if not installed:
        try:
            op.execute("CREATE EXTENSION pg_trgm")
        except sa.exc.DBAPIError as exc:
            raise MissingPrerequisiteError(
                "Migration 0008 needs PostgreSQL's pg_trgm extension and could not create it "
                f"({exc.orig}). Ask the database's owner (PostgreSQL 13 and later) or a "
                "superuser to run `CREATE EXTENSION pg_trgm;` in this database, then run "
                "`commagent db upgrade` again."
            ) from exc
    for name, (table, columns) in INDEXES.items():
        op.create_index(
            name,
            table,
            list(columns),
            postgresql_using="gin",
            postgresql_ops=dict.fromkeys(columns, "gin_trgm_ops"),
            if_not_exists=True,  # built beforehand, CONCURRENTLY, on a large installation
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _columns) in INDEXES.items():
        op.drop_index(name, table_name=table)
