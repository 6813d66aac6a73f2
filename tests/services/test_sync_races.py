"""A sync page that loses a race with another writer on PostgreSQL is written again, not failed.

Found by the scale-out test (tests/test_scale_out.py): with triage, the sender and two mailboxes'
syncs writing at once, a page's transaction met a ticket changed since it was read (triage had
routed it) or a deadlock over new contacts (the other mailbox's sync inserting the same
customers), and the whole sync run failed, backed off, and started over. Here each race is made
to happen exactly: another transaction holds the row, and lets go once the sync waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings
from communication_agent.models import Contact, Mailbox, Message, Ticket
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor
from communication_agent.services.ingestion import SyncCounts
from tests.adapters.test_gmail_sync import FAST, gmail_settings
from tests.conftest import TEST_SECRET_KEY
from tests.gmail_server import GmailTestServer
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.postgres_only


@pytest.fixture
def gmail() -> Iterator[GmailTestServer]:
    with GmailTestServer() as server:
        yield server


async def _connect(sessionmaker: SessionMaker, gmail: GmailTestServer) -> int:
    async with sessionmaker() as session:
        mailbox = await mailboxes.connect_gmail(
            session,
            Actor.system("tests"),
            address=gmail.state.address,
            refresh_token=gmail.issue_refresh_token(),
            secret_key=TEST_SECRET_KEY,
        )
        return mailbox.id


async def _sync(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, mailbox_id: int
) -> SyncCounts:
    opener = provider_opener(gmail_settings(settings, gmail), TEST_SECRET_KEY, retry=FAST)
    return await sync.sync_mailbox(sessionmaker, mailbox_id, opener, owner="test")


async def _backend_pid(connection: AsyncConnection) -> int:
    return int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)


async def _wait_until_another_backend_waits(engine: AsyncEngine, holder: int) -> None:
    """Until a backend other than `holder` waits for a lock in this database (the sync, on the
    holder's row). A fresh connection per look: activity figures are fixed per transaction."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with engine.connect() as look:
            waiting = await look.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> :holder"
                ),
                {"holder": holder},
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the sync never waited for the held row")


async def test_a_page_whose_ticket_changed_meanwhile_is_written_again(
    settings: Settings, sessionmaker: SessionMaker, engine: AsyncEngine, gmail: GmailTestServer
) -> None:
    gmail.add_message(raw_email(message_id="<q@x>", subject="Help"), thread_id="t1")
    mailbox_id = await _connect(sessionmaker, gmail)
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    gmail.add_message(
        raw_email(message_id="<r@x>", in_reply_to="<q@x>", subject="Re: Help"), thread_id="t1"
    )
    async with engine.connect() as other_writer:  # triage routing the ticket, say
        holder = await _backend_pid(other_writer)
        await other_writer.execute(
            update(Ticket).values(priority="high", version=Ticket.version + 1)
        )
        syncing = asyncio.create_task(_sync(sessionmaker, settings, gmail, mailbox_id))
        await _wait_until_another_backend_waits(engine, holder)
        await other_writer.commit()  # the sync's read of the ticket is stale now
    counts = await asyncio.wait_for(syncing, 30)

    assert (counts.new_messages, counts.threaded, counts.errors) == (1, 1, 0)
    async with sessionmaker() as session:
        ticket = (await session.scalars(select(Ticket))).one()
        assert ticket.priority == "high"  # the other writer's change stands
        on_ticket = select(func.count()).where(Message.ticket_id == ticket.id)
        assert await session.scalar(on_ticket) == 2
        mailbox = await session.get_one(Mailbox, mailbox_id)
        assert (mailbox.consecutive_errors, mailbox.last_error) == (0, None)


async def test_a_page_that_deadlocks_over_new_contacts_is_written_again(
    settings: Settings, sessionmaker: SessionMaker, engine: AsyncEngine, gmail: GmailTestServer
) -> None:
    """The other writer (another mailbox's sync) takes the customers in the opposite order."""
    gmail.add_message(raw_email(sender="first@example.org", subject="One", minutes=1))
    gmail.add_message(raw_email(sender="second@example.org", subject="Two", minutes=2))
    mailbox_id = await _connect(sessionmaker, gmail)
    async with engine.connect() as other_writer:
        holder = await _backend_pid(other_writer)
        # The sync's backend is the one to find the deadlock, and so the one PostgreSQL aborts.
        await other_writer.execute(text("SET deadlock_timeout = '30s'"))
        await other_writer.execute(insert(Contact).values(email="second@example.org", name="2"))
        syncing = asyncio.create_task(_sync(sessionmaker, settings, gmail, mailbox_id))
        await _wait_until_another_backend_waits(engine, holder)  # holds first@, wants second@
        await asyncio.wait_for(
            other_writer.execute(insert(Contact).values(email="first@example.org", name="1")), 30
        )
        await other_writer.commit()
    counts = await asyncio.wait_for(syncing, 30)

    assert (counts.new_messages, counts.new_tickets, counts.errors) == (2, 2, 0)
    async with sessionmaker() as session:
        contacts = list(await session.scalars(select(Contact.email).order_by(Contact.email)))
        assert contacts == ["first@example.org", "second@example.org"]
        assert await session.scalar(select(func.count()).select_from(Message)) == 2
        mailbox = await session.get_one(Mailbox, mailbox_id)
        assert (mailbox.consecutive_errors, mailbox.last_error) == (0, None)
