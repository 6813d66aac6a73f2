import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.core.db import assign_sqlite_ids, begin_write
from communication_agent.models import Contact


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


async def test_new_rows_get_ids_before_the_flush_on_sqlite_only(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessionmaker() as session:
        await begin_write(session)
        session.add(Contact(email="first@example.org", name="First"))
        await session.commit()
    async with sessionmaker() as session:
        await begin_write(session)
        existing = int(await session.scalar(select(func.max(Contact.id))) or 0)
        fresh = [Contact(email=f"c{i}@example.org", name="") for i in range(3)]
        session.add_all(fresh)
        await assign_sqlite_ids(session)
        expected = [existing + 1, existing + 2, existing + 3] if settings.is_sqlite else [None] * 3
        assert [c.id for c in fresh] == expected  # in the order they were added
        await session.commit()
    async with sessionmaker() as session:
        emails = (await session.scalars(select(Contact.email).order_by(Contact.id))).all()
        assert emails == ["first@example.org", *(f"c{i}@example.org" for i in range(3))]
