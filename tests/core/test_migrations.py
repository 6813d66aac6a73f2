import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from communication_agent.core import migrations
from communication_agent.core.config import Settings
from communication_agent.core.db import create_engine
from communication_agent.models import Base
from tests import databases
from tests.conftest import running_app
from tests.factories import Factory


async def test_migrations_produce_exactly_the_models_schema(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        include = migrations.objects_for(connection.dialect.name)
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_schema_is_reported_current_after_upgrade(engine: AsyncEngine) -> None:
    status = await migrations.schema_status(engine)
    assert status.is_current
    assert status.current == migrations.head_revision()


async def test_downgrade_then_upgrade_round_trips(engine: AsyncEngine) -> None:
    await migrations.downgrade(engine, "base")
    status = await migrations.schema_status(engine)
    assert status.current is None
    assert "commagent db upgrade" in status.describe()
    assert (await migrations.upgrade(engine)).is_current


async def test_app_refuses_an_unmigrated_schema_naming_the_command(
    engine: AsyncEngine, settings: Settings
) -> None:
    await migrations.downgrade(engine, "base")
    strict = settings.model_copy(update={"auto_migrate": False})
    with pytest.raises(migrations.SchemaNotCurrentError, match="run `commagent db upgrade`"):
        async with running_app(strict):
            pass


async def test_embedded_default_migrates_itself(engine: AsyncEngine, settings: Settings) -> None:
    if not settings.is_sqlite:
        pytest.skip("the self-migrating embedded default is SQLite")
    await migrations.downgrade(engine, "base")
    async with running_app(settings) as (_app, client):
        assert (await client.get("/healthz")).status_code == 200
    assert (await migrations.schema_status(engine)).is_current


async def test_postgres_does_not_migrate_itself_by_default(settings: Settings) -> None:
    assert settings.should_auto_migrate is settings.is_sqlite


async def test_activity_log_rejects_update_and_delete_at_the_database(
    engine: AsyncEngine, factory: Factory
) -> None:
    await factory.principal()  # writes user.created and token.created entries
    for statement in ("UPDATE activity_log SET action = 'forged'", "DELETE FROM activity_log"):
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                await conn.execute(text(statement))
    async with engine.connect() as conn:
        actions = (await conn.execute(text("SELECT action FROM activity_log"))).scalars().all()
    assert sorted(actions) == ["token.created", "user.created"]


async def test_a_schema_from_a_newer_version_is_refused_even_with_auto_migrate(
    engine: AsyncEngine, settings: Settings
) -> None:
    head = migrations.head_revision()
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    try:
        status = await migrations.schema_status(engine)
        assert not status.known
        eager = settings.model_copy(update={"auto_migrate": True})
        with pytest.raises(migrations.SchemaNotCurrentError, match="does not know"):
            async with running_app(eager):
                pass
    finally:  # the PostgreSQL scratch database is shared by the whole run
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


@pytest.mark.postgres_only
async def test_without_the_right_to_create_pg_trgm_the_upgrade_says_what_to_run() -> None:
    """A least-privilege role (tables in its schema, no CREATE on the database) stops at 0008
    with the statement an administrator can run, rather than a bare permission error."""
    server = databases.server_url()
    assert server is not None
    suffix = uuid.uuid4().hex[:8]
    role, database = f"commagent_limited_{suffix}", f"commagent_limited_{suffix}"
    await databases._admin_execute(server, f'CREATE ROLE "{role}" LOGIN')
    await databases._admin_execute(server, f'CREATE DATABASE "{database}"')
    scratch = server.set(database=database)
    try:
        await databases._admin_execute(scratch, f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
        limited = create_engine(scratch.set(username=role, password=None), pool_size=1)
        try:
            with pytest.raises(
                migrations.MissingPrerequisiteError, match=r"run `CREATE EXTENSION pg_trgm;`"
            ):
                await migrations.upgrade(limited)
            # The upgrade is one transaction: nothing is left half-applied, and once the
            # extension exists the same command finishes.
            assert (await migrations.schema_status(limited)).current is None
            await databases._admin_execute(scratch, "CREATE EXTENSION pg_trgm")
            assert (await migrations.upgrade(limited)).is_current
        finally:
            await limited.dispose()
    finally:
        await databases._admin_execute(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await databases._admin_execute(server, f'DROP ROLE IF EXISTS "{role}"')
