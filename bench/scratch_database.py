"""A fresh, empty database for one measurement, gone afterwards.

SQLite: a file in a temporary directory. PostgreSQL: a new database on the local server
(`COMMAGENT_BENCH_POSTGRES`, default the test server), dropped even when the measurement fails,
so a benchmark never measures or leaves behind another run's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

POSTGRES_SERVER = os.environ.get(
    "COMMAGENT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def scratch_database(db: str) -> AsyncIterator[str]:
    """Yields the new database's URL; `db` is "sqlite", or "postgres"/"postgresql"."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="commagent-bench-") as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    name = f"commagent_bench_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def admin(statement: str) -> None:
    """One statement on the server's maintenance connection (CREATE and DROP DATABASE)."""
    conn = await asyncpg.connect(POSTGRES_SERVER)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
