"""Alembic environment. Always run through `communication_agent.core.migrations`, which hands in
an open connection; the engine is async, so the connection comes from `AsyncConnection.run_sync`."""

from alembic import context
from sqlalchemy.engine import Connection

from communication_agent.core.migrations import objects_for
from communication_agent.models import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite can roll DDL back; our engine issues BEGIN itself (see core/db.py), so a failed
        # migration leaves the schema as it was instead of half-applied.
        transactional_ddl=True,
        compare_type=True,
        include_object=objects_for(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `commagent db upgrade`, not the alembic command")
run_migrations(connection)
