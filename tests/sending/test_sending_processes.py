"""Sending from several real processes on PostgreSQL: every approved reply leaves exactly once,
even when one sender is killed with SIGKILL halfway."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import Draft, Mailbox, OutboxEntry, Ticket
from communication_agent.models.enums import ActorType, Role, TicketState
from communication_agent.services import drafts, mailboxes
from communication_agent.services.actors import Actor
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.gmail_server import Fault, GmailTestServer, sent_messages
from tests.live_server import COMMAGENT, cli_environment

SessionMaker = async_sessionmaker[AsyncSession]
REPLIES = 200


async def _sent(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).select_from(Draft).where(Draft.status == "sent")
        return int(await session.scalar(query) or 0)


async def _wait_for(sessionmaker: SessionMaker, expected: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (count := await _sent(sessionmaker)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return count


async def _mailbox_and_approver(
    sessionmaker: SessionMaker, factory: Factory, gmail: GmailTestServer
) -> tuple[Mailbox, Actor]:
    """A Gmail mailbox connected to the test server, and an operator who approves."""
    async with sessionmaker() as session:
        connected = await mailboxes.connect_gmail(
            session,
            Actor.system("tests"),
            address=gmail.state.address,
            refresh_token=gmail.issue_refresh_token(),
            secret_key=TEST_SECRET_KEY,
        )
        mailbox = await session.get_one(Mailbox, connected.id)
    approver = await factory.principal(Role.OPERATOR)
    actor = Actor(
        type=ActorType.USER, name="approver", user_id=approver.user.id, role=Role.OPERATOR
    )
    return mailbox, actor


def _sender_environment(
    settings: Settings, gmail: GmailTestServer, data_dir: Path
) -> dict[str, str]:
    """`commagent worker` as a fast sender against the test server (no triage)."""
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(data_dir),
        **gmail.client_settings(),
        sender_interval_seconds="0.2",
        sender_lease_seconds="5",
        reasoning_enabled="false",
    )


@pytest.mark.postgres_only
async def test_three_senders_send_each_approved_reply_exactly_once(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory, tmp_path: Path
) -> None:
    with GmailTestServer() as gmail:
        mailbox, actor = await _mailbox_and_approver(sessionmaker, factory, gmail)
        for i in range(REPLIES):
            ticket = await factory.ticket(mailbox=mailbox, subject=f"Question {i}")
            async with sessionmaker() as session:
                await session.execute(
                    update(Ticket)
                    .where(Ticket.id == ticket.id)
                    .values(state=TicketState.NEEDS_ACTION.value)
                )
                await session.commit()
            async with sessionmaker() as session:
                draft = await drafts.create(session, actor, ticket.id, f"Answer number {i}.")
            async with sessionmaker() as session:
                await drafts.approve(
                    session, actor, draft.id, expected_version=1, rules=drafts.ApprovalRules()
                )
        # Every send is slow after Gmail accepted it: a killed sender leaves accepted,
        # unrecorded replies behind, which its successors must find instead of resending.
        gmail.inject(Fault("messages.send.accepted", delay=0.02, times=100_000))
        env = _sender_environment(settings, gmail, tmp_path)
        senders = [
            subprocess.Popen(
                [COMMAGENT, "worker", "--interval", "3600"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            assert await _wait_for(sessionmaker, REPLIES // 4, 90) >= REPLIES // 4
            senders[0].send_signal(signal.SIGKILL)
            assert await _wait_for(sessionmaker, REPLIES, 120) == REPLIES
            await asyncio.sleep(1.0)  # a few more rounds: nothing more may leave
        finally:
            for sender in senders[1:]:
                sender.send_signal(signal.SIGTERM)
            outputs = [s.communicate(timeout=30)[0] for s in senders]
        assert [s.returncode for s in senders[1:]] == [0, 0], outputs[1:]

        sent = sent_messages(gmail)
        message_ids = {m.raw.split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0] for m in sent}
        assert len(sent) == REPLIES, f"{len(sent) - REPLIES} replies went out twice"
        assert len(message_ids) == REPLIES
    async with sessionmaker() as session:
        statuses = set(await session.scalars(select(OutboxEntry.status)))
        assert statuses == {"sent"}


async def test_a_sender_killed_after_gmail_accepted_the_reply_does_not_send_it_twice(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory, tmp_path: Path
) -> None:
    """SIGKILL between Gmail accepting the message and our commit; a restarted sender finds
    the reply by its Message-ID and records it: exactly one message in the mailbox."""
    with GmailTestServer() as gmail:
        mailbox, actor = await _mailbox_and_approver(sessionmaker, factory, gmail)
        ticket = await factory.ticket(mailbox=mailbox)
        async with sessionmaker() as session:
            await session.execute(update(Ticket).values(state=TicketState.NEEDS_ACTION.value))
            await session.commit()
        async with sessionmaker() as session:
            draft = await drafts.create(session, actor, ticket.id, "The answer.")
        async with sessionmaker() as session:
            await drafts.approve(
                session, actor, draft.id, expected_version=1, rules=drafts.ApprovalRules()
            )
        gmail.inject(Fault("messages.send.accepted", delay=60))  # accepted, answer withheld
        env = _sender_environment(settings, gmail, tmp_path)

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(
                [COMMAGENT, "worker", "--interval", "3600"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

        first = start()
        deadline = time.monotonic() + 30
        while not sent_messages(gmail) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not sent_messages(gmail):
            first.kill()
            pytest.fail("the sender never sent: " + first.communicate(timeout=30)[0][-3000:])
        assert len(sent_messages(gmail)) == 1  # Gmail has it; our database does not know yet
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert await _sent(sessionmaker) == 0

        second = start()
        try:
            assert await _wait_for(sessionmaker, 1, 30) == 1
        finally:
            second.send_signal(signal.SIGTERM)
            output = second.communicate(timeout=30)[0]
        assert second.returncode == 0, output
        assert len(sent_messages(gmail)) == 1
        assert gmail.calls("messages.send") == 1
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
        assert (stored.status, stored.status_reason) == (
            "sent",
            "found in the mailbox after a retry",
        )
