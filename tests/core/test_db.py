import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from communication_agent.core.config import Settings


async def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(
    engine: AsyncEngine, settings: Settings
) -> None:
    if not settings.is_sqlite:
        return  # the pragmas are SQLite's; PostgreSQL enforces foreign keys always
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() > 0


async def test_foreign_keys_are_enforced(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            await conn.execute(
                text(
                    "INSERT INTO notes (ticket_id, author_id, body, created_at) "
                    "VALUES (999, 999, 'orphan', CURRENT_TIMESTAMP)"
                )
            )
