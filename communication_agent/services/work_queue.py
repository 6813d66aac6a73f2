"""Claiming the oldest due row of a work table under a lease, for any number of processes.

Shared by the reasoning queue and the outbox. A plain read first (an idle queue must not take
SQLite's write lock every round); then, in a write transaction, the oldest due row, locked with
`FOR UPDATE SKIP LOCKED` on PostgreSQL (so concurrent claimers take different rows) or under
SQLite's single writer, is marked as running for this owner until the lease ends. A row whose
lease ran out is due again: its worker died.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.db import begin_write
from communication_agent.models.base import utcnow

Row = TypeVar("Row")
Claim = TypeVar("Claim")


async def claim_oldest(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: type[Row],
    due: Callable[[Any], ColumnElement[bool]],
    *,
    running: str,
    owner: str,
    lease: timedelta,
    claimed: Callable[[AsyncSession, Row], Awaitable[Claim]],
) -> Claim | None:
    """`due(now)` says which rows are due; `claimed(session, row)` runs inside the claiming
    transaction, after the row is marked, and returns what the worker gets."""
    now = utcnow()
    condition = due(now)
    table: Any = model
    async with sessionmaker() as session:
        if await session.scalar(select(table.id).where(condition).limit(1)) is None:
            return None
    async with sessionmaker() as session:
        await begin_write(session)
        query = select(table).where(condition).order_by(table.id).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = await session.scalar(query)
        if row is None:
            await session.commit()
            return None
        row.status, row.lease_owner = running, owner
        row.lease_expires_at, row.updated_at = now + lease, now
        row.attempts += 1
        result = await claimed(session, row)
        await session.commit()
        return result
