"""Async engine and session factory for SQLite and PostgreSQL.

SQLite is tuned for a server workload: WAL so readers never block the writer, foreign keys on
(SQLite leaves them off by default), and a busy timeout so a second writer waits instead of
failing. Transactions begin with a plain `BEGIN` (reads never take the write lock), except units
of work that declare they will write with `begin_write`: those start with `BEGIN IMMEDIATE` and
so hold the write lock before their first read. Without that, two transactions that both read
and then write can fail on SQLite with `database is locked` instead of waiting their turn.

Sessions are short (one request, one job step) and never stay open across network I/O: an open
SQLite write transaction blocks every other writer, and on PostgreSQL the same rule keeps
connections and row locks short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 15_000
WRITE_INTENT = "commagent_write_intent"


def create_engine(url: URL, *, pool_size: int = 10) -> AsyncEngine:
    """Create the engine for `url` with the per-backend settings described above."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_pre_ping=False
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        writes = conn.get_execution_options().get(WRITE_INTENT, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


async def begin_write(session: AsyncSession) -> None:
    """Start this session's unit of work as a writer (see the module docstring).

    A read-only transaction the session may still have open is committed first (it has nothing
    to write), so the new transaction starts with the write lock already held.
    """
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("begin_write() must come before the unit of work changes anything")
        await session.commit()
    await session.connection(execution_options={WRITE_INTENT: True})


async def assign_sqlite_ids(session: AsyncSession) -> None:
    """Give the session's new rows their ids before a flush, on SQLite only.

    SQLite cannot tell which RETURNING row belongs to which row of a multi-row INSERT, so the
    ORM inserts objects without ids one statement at a time; with ids set it batches them. Inside
    a `begin_write` transaction this process is SQLite's only writer, so `max(id) + 1` onwards is
    exactly what SQLite would have allocated (the tables are plain rowid tables, which reuse
    nothing but a deleted maximum, as SQLite itself does). PostgreSQL batches on its own.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    pending: dict[type[Any], list[Any]] = {}
    for obj in session.new:
        mapper = inspect(obj).mapper
        if len(mapper.primary_key) == 1 and mapper.primary_key[0].key == "id" and obj.id is None:
            pending.setdefault(type(obj), []).append(obj)
    with session.no_autoflush:
        for cls, objects in pending.items():
            table = inspect(cls).local_table
            highest = await session.scalar(select(func.coalesce(func.max(table.c.id), 0)))
            for offset, obj in enumerate(objects, start=1):
                obj.id = int(highest or 0) + offset
