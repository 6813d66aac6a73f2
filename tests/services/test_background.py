"""Background sync rounds: what is due, backoff for failing mailboxes, and the loop's stop."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings
from communication_agent.models import Mailbox, Message
from communication_agent.models.base import utcnow
from communication_agent.services import background
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]


def test_backoff_doubles_per_failure_and_is_capped() -> None:
    assert background.backoff(60, 1) == timedelta(minutes=2)
    assert background.backoff(60, 3) == timedelta(minutes=8)
    assert background.backoff(60, 50) == background.MAX_BACKOFF


async def _local(
    factory: Factory, sessionmaker: SessionMaker, folder: Path, **fields: object
) -> int:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        for name, value in fields.items():
            setattr(row, name, value)
        await session.commit()
    return mailbox.id


async def test_due_skips_reauth_inactive_and_backing_off_mailboxes(
    factory: Factory, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    healthy = await _local(factory, sessionmaker, tmp_path)
    await _local(factory, sessionmaker, tmp_path, token_state="needs_reauth")
    await _local(factory, sessionmaker, tmp_path, is_active=False)
    await _local(
        factory, sessionmaker, tmp_path, consecutive_errors=2, last_sync_started_at=utcnow()
    )
    recovered = await _local(
        factory,
        sessionmaker,
        tmp_path,
        consecutive_errors=1,
        last_sync_started_at=utcnow() - timedelta(minutes=5),
    )
    assert await background.due_mailboxes(sessionmaker, interval=60) == [healthy, recovered]


async def test_a_round_syncs_due_mailboxes_and_the_loop_stops_when_asked(
    factory: Factory, sessionmaker: SessionMaker, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "1.eml").write_bytes(raw_email(message_id="<bg1@x>"))
    await _local(factory, sessionmaker, tmp_path)
    broken = await _local(factory, sessionmaker, tmp_path / "missing")
    opener = provider_opener(settings, TEST_SECRET_KEY)
    stop = asyncio.Event()
    loop = asyncio.create_task(
        background.run_sync_loop(sessionmaker, opener, owner="test", interval=0.05, stop=stop)
    )
    for _ in range(100):
        async with sessionmaker() as session:
            if await session.scalar(select(func.count()).select_from(Message)):
                break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(loop, timeout=5)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1
        failing = await session.get_one(Mailbox, broken)
        assert failing.consecutive_errors >= 1  # recorded, and the loop carried on
