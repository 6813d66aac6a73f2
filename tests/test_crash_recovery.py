"""Kill `commagent sync` at random points; the restarted sync ends where an uninterrupted one does."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings, normalise_database_url
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.migrations import upgrade
from communication_agent.models import Mailbox, Message
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor
from tests.adapters.test_gmail_sync import FAST, gmail_settings
from tests.conftest import TEST_SECRET_KEY
from tests.gmail_server import Fault, GmailTestServer
from tests.live_server import COMMAGENT, cli_environment
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
SEED = 20261125
TRIALS = 3
CONVERSATIONS = 40


def _fill(gmail: GmailTestServer, conversations: int = CONVERSATIONS) -> None:
    """Conversations of three messages: question, reply threaded by headers, reply by thread id."""
    for c in range(conversations):
        thread = f"thread-{c}"
        gmail.add_message(
            raw_email(message_id=f"<c{c}-1@x>", subject=f"Case {c}"), thread_id=thread
        )
        gmail.add_message(
            raw_email(message_id=f"<c{c}-2@x>", in_reply_to=f"<c{c}-1@x>", subject=f"Re: Case {c}"),
            thread_id=thread,
        )
        gmail.add_message(
            raw_email(message_id=f"<c{c}-3@x>", subject=f"Re: Case {c}"), thread_id=thread
        )


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


async def _shape(sessionmaker: SessionMaker) -> tuple[set[frozenset[str]], int, str | None]:
    """Which messages share a ticket, how many there are, and the stored checkpoint."""
    async with sessionmaker() as session:
        rows = (await session.execute(select(Message.ticket_id, Message.message_id_header))).all()
        checkpoint = (await session.scalars(select(Mailbox.sync_checkpoint))).one()
    tickets: dict[int, set[str]] = {}
    for ticket_id, header in rows:
        tickets.setdefault(ticket_id, set()).add(header or "")
    return {frozenset(v) for v in tickets.values()}, len(rows), checkpoint


async def test_killed_syncs_restart_to_the_same_result(
    settings: Settings, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    with GmailTestServer() as gmail:
        _fill(gmail)
        gmail.inject(
            Fault("messages.get", status=None, delay=0.15, times=100_000)
        )  # ~3 s of syncing
        await _connect(sessionmaker, gmail)
        env = cli_environment(
            database_url=settings.database.render_as_string(hide_password=False),
            secret_key=TEST_SECRET_KEY,
            data_dir=str(tmp_path),
            sync_lease_seconds="1",
            gmail_page_size="6",
            **gmail.client_settings(),
        )
        killed = 0
        for _ in range(TRIALS):
            process = subprocess.Popen(
                [COMMAGENT, "sync", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            await asyncio.sleep(rng.uniform(1.2, 2.0))  # start-up takes about a second
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                killed += 1
            process.wait()
            time.sleep(1.2)
        finished = subprocess.run(
            [COMMAGENT, "sync", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert finished.returncode == 0, finished.stderr
        assert killed == TRIALS, "a trial finished before its kill; the test would prove less"

        reference_engine = create_engine(
            normalise_database_url(f"sqlite:///{tmp_path / 'reference.db'}")
        )
        await upgrade(reference_engine)
        reference = create_sessionmaker(reference_engine)
        mailbox_id = await _connect(reference, gmail)
        gmail.state.faults.clear()
        opener = provider_opener(gmail_settings(settings, gmail), TEST_SECRET_KEY, retry=FAST)
        await sync.sync_mailbox(reference, mailbox_id, opener, owner="reference")
        expected = await _shape(reference)
        await reference_engine.dispose()

    crashed = await _shape(sessionmaker)
    assert crashed[1] == expected[1] == 3 * CONVERSATIONS
    assert crashed[0] == expected[0]
    assert len(expected[0]) == CONVERSATIONS
    assert crashed[2] == expected[2]
