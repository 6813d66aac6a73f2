"""Which real database a test run uses, and how each test gets a clean one.

`COMMAGENT_TEST_DATABASE_URL` unset: SQLite files (a migrated template copied per test).
Set to a PostgreSQL server URL: one scratch database per run, migrated once, truncated per test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL

from communication_agent.core.config import normalise_database_url
from communication_agent.core.db import create_engine
from communication_agent.core.migrations import schema_status, upgrade
from communication_agent.models import Base

TEST_DATABASE_ENV = "COMMAGENT_TEST_DATABASE_URL"


def server_url() -> URL | None:
    raw = os.environ.get(TEST_DATABASE_ENV)
    return normalise_database_url(raw) if raw else None


def is_postgres_run() -> bool:
    return server_url() is not None


async def _admin_execute(url: URL, statement: str) -> None:
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_reachable(url: URL) -> str | None:
    """None when reachable, else the reason."""
    try:
        asyncio.run(asyncio.wait_for(_admin_execute(url, "SELECT 1"), timeout=10))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class PostgresScratch:
    """A throwaway database on the test server, created and migrated once per run."""

    def __init__(self, server: URL) -> None:
        self.server = server
        self.name = f"commagent_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = server.set(database=self.name)

    def create(self) -> None:
        asyncio.run(_admin_execute(self.server, f'CREATE DATABASE "{self.name}"'))
        asyncio.run(self._migrate())

    async def _migrate(self) -> None:
        engine = create_engine(self.url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    def drop(self) -> None:
        asyncio.run(
            _admin_execute(self.server, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        )

    async def reset(self) -> None:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        engine = create_engine(self.url, pool_size=1)
        try:
            if not (await schema_status(engine)).is_current:  # a test migrated it down
                await upgrade(engine)
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            await engine.dispose()


class SqliteTemplate:
    """A migrated SQLite file; each test gets its own copy (much faster than migrating)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"

    def create(self) -> None:
        async def migrate() -> None:
            engine = create_engine(normalise_database_url(f"sqlite:///{self.path}"))
            try:
                await upgrade(engine)
            finally:
                await engine.dispose()

        asyncio.run(migrate())

    def copy_to(self, directory: Path) -> URL:
        target = directory / "commagent.db"
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return normalise_database_url(f"sqlite:///{target}")
