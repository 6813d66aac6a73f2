"""A Gmail mailbox on the loopback server, synced in rounds exactly as `commagent worker` does,
and watched through the real application (`GET /api/v1/mailboxes`, `GET /readyz`).

Timing comes from the knobs production has: the round interval (from which the failing-mailbox
backoff follows) and the adapter's retry policy, both made short here. Nothing of ours is
patched: faults are the Gmail server's answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.adapters.mail_provider import ProviderOpener
from communication_agent.core.config import Settings
from communication_agent.models import Message
from communication_agent.models.enums import Role
from communication_agent.services import background, mailboxes
from communication_agent.services.actors import Actor
from tests.adapters.test_gmail_sync import gmail_settings
from tests.conftest import TEST_SECRET_KEY, running_app
from tests.crash_invariants import Expectation, messages_kept_once
from tests.factories import Factory
from tests.gmail_server import GmailTestServer
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
# Three tries per call, waits in hundredths of a second, Retry-After honoured up to 0.2 s.
QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=0.2)
INTERVAL = 0.2  # seconds between rounds; a failing mailbox waits INTERVAL * 2**failures
# (counted from the start of its last sync)
PAGE_SIZE = 4  # several pages per sync, so faults can land between them
OWNER = "worker:reliability-tests"
SUSTAINED = 1_000_000  # a fault that lasts until the test clears it


@dataclass
class MailboxUnderFaults:
    gmail: GmailTestServer
    settings: Settings
    sessionmaker: SessionMaker
    client: httpx.AsyncClient
    headers: dict[str, str]
    mailbox_id: int
    opener: ProviderOpener

    def plant(self, conversations: int, label: str) -> None:
        """Conversations of two messages (a question and a follow-up in its Gmail thread)."""
        for c in range(conversations):
            question = f"<{label}{c}.1@example.org>"
            thread = f"{label}-{c}"
            self.gmail.add_message(
                raw_email(message_id=question, subject=f"{label} {c}"), thread_id=thread
            )
            self.gmail.add_message(
                raw_email(message_id=f"<{label}{c}.2@example.org>", in_reply_to=question),
                thread_id=thread,
            )

    async def next_round(self, opener: ProviderOpener | None = None, within: float = 20) -> int:
        """Wait until the mailbox is due (a failing one backs off), then run one round of the
        worker's sync loop; how many mailboxes it synced (0: the sync failed)."""
        deadline = time.monotonic() + within
        while not await background.due_mailboxes(self.sessionmaker, INTERVAL):
            assert time.monotonic() < deadline, "the mailbox never became due"
            await asyncio.sleep(0.02)
        return await self.round_now(opener)

    async def round_now(self, opener: ProviderOpener | None = None) -> int:
        return await background.sync_due_mailboxes(
            self.sessionmaker, opener or self.opener, owner=OWNER, interval=INTERVAL
        )

    async def mailbox_view(self) -> dict[str, Any]:
        """The mailbox as `GET /api/v1/mailboxes` (and the console's mailboxes page) shows it."""
        response = await self.client.get("/api/v1/mailboxes", headers=self.headers)
        assert response.status_code == 200, response.text
        return next(m for m in response.json() if m["id"] == self.mailbox_id)

    async def readiness(self) -> tuple[str, dict[str, Any]]:
        """`/readyz`'s overall status and this mailbox's entry."""
        response = await self.client.get("/readyz", headers=self.headers)
        assert response.status_code == 200, response.text  # a mailbox never makes it unready
        body = response.json()
        item = next(m for m in body["mailboxes"]["items"] if m["id"] == self.mailbox_id)
        return body["status"], item

    async def stored(self) -> int:
        async with self.sessionmaker() as session:
            query = select(func.count()).select_from(Message)
            return int(await session.scalar(query) or 0)

    async def lost_or_duplicated(self) -> list[str]:
        async with self.sessionmaker() as session:
            return await messages_kept_once(
                session, self.gmail.state.snapshot(), Expectation(mailbox_id=self.mailbox_id)
            )

    async def reconnect(self) -> None:
        """What an admin does after a revocation: consent again (a new refresh token)."""
        async with self.sessionmaker() as session:
            await mailboxes.connect_gmail(
                session,
                Actor.system("tests"),
                address=self.gmail.state.address,
                refresh_token=self.gmail.issue_refresh_token(),
                secret_key=TEST_SECRET_KEY,
            )


@asynccontextmanager
async def mailbox_under_faults(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory
) -> AsyncIterator[MailboxUnderFaults]:
    with GmailTestServer() as gmail:
        configured = gmail_settings(
            settings,
            gmail,
            gmail_page_size=PAGE_SIZE,
            sender_interval_seconds=3600,  # the app's own loops stay out of the way
            reasoning_enabled=False,
        )
        viewer = await factory.principal(Role.VIEWER)
        async with running_app(configured) as (_app, client):
            async with sessionmaker() as session:
                mailbox = await mailboxes.connect_gmail(
                    session,
                    Actor.system("tests"),
                    address=gmail.state.address,
                    refresh_token=gmail.issue_refresh_token(),
                    secret_key=TEST_SECRET_KEY,
                )
            yield MailboxUnderFaults(
                gmail=gmail,
                settings=configured,
                sessionmaker=sessionmaker,
                client=client,
                headers=viewer.headers,
                mailbox_id=mailbox.id,
                opener=provider_opener(configured, TEST_SECRET_KEY, retry=QUICK),
            )
