"""Crash anywhere, the suite's share: a few seeded trials of `tests.crash_harness` (SIGKILL of a
syncing and sending `commagent worker`, restarted) on the run's database. The full campaign is
`bench/crash_campaign.py`; see docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings
from communication_agent.models import Ticket
from communication_agent.models.enums import TicketState
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor
from tests.adapters.test_gmail_sync import FAST, gmail_settings
from tests.conftest import TEST_SECRET_KEY
from tests.crash_harness import run_trial
from tests.crash_invariants import Expectation, check
from tests.crash_world import TrialSize
from tests.databases import PostgresScratch, SqliteTemplate
from tests.gmail_server import GmailTestServer
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
SEED = 20261125
TRIALS = 4
SUITE_SIZE = TrialSize(conversations=6, arrivals=2, kills=2)


async def _fresh(database_template: object, directory: Path) -> URL:
    if isinstance(database_template, PostgresScratch):
        await database_template.reset()
        return database_template.url
    assert isinstance(database_template, SqliteTemplate)
    return database_template.copy_to(directory)


async def test_a_worker_killed_anywhere_loses_and_repeats_nothing(
    database_template: object, tmp_path: Path
) -> None:
    results = []
    for n in range(TRIALS):
        url = await _fresh(database_template, tmp_path / f"db-{n}")
        results.append(
            await run_trial(
                SEED + n,
                url,
                tmp_path / f"trial-{n}",
                secret_key=TEST_SECRET_KEY,
                size=SUITE_SIZE,
            )
        )
    violations = [f"seed {r.seed}: {v}" for r in results for v in r.violations]
    assert violations == []
    assert sum(r.kills for r in results) == TRIALS * SUITE_SIZE.kills, "a kill came too late"
    assert sum(r.replies for r in results) > 0
    assert sum(r.faults for r in results) > 0


async def test_the_invariants_see_loss_duplicates_and_a_log_that_disagrees(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    """The checker itself: a clean sync passes; each planted fault is reported."""
    with GmailTestServer() as gmail:
        first = gmail.add_message(raw_email(message_id="<a1@x>"), thread_id="a")
        second = gmail.add_message(
            raw_email(message_id="<a2@x>", in_reply_to="<a1@x>"), thread_id="a"
        )
        async with sessionmaker() as session:
            mailbox = await mailboxes.connect_gmail(
                session,
                Actor.system("tests"),
                address=gmail.state.address,
                refresh_token=gmail.issue_refresh_token(),
                secret_key=TEST_SECRET_KEY,
            )
        opener = provider_opener(gmail_settings(settings, gmail), TEST_SECRET_KEY, retry=FAST)
        await sync.sync_mailbox(sessionmaker, mailbox.id, opener, owner="tests")
        expected = Expectation(mailbox_id=mailbox.id, conversations=[[first.id, second.id]])
        async with sessionmaker() as session:
            assert await check(session, gmail, expected) == []

        gmail.add_message(raw_email(message_id="<unsynced@x>"))  # never fetched: lost
        gmail.add_message(raw_email(message_id="<r@x>"), labels=("SENT",))  # nobody approved it
        gmail.add_message(raw_email(message_id="<r@x>"), labels=("SENT",))  # and twice
        async with sessionmaker() as session:
            await session.execute(update(Ticket).values(state=TicketState.DONE.value))
            await session.commit()
        async with sessionmaker() as session:
            problems = await check(session, gmail, expected)
    assert sum(p.startswith("lost: ") for p in problems) == 3
    assert "sent 2 times: reply r@x" in problems
    assert "Gmail sent r@x, which no approval asked for" in problems
    assert any(p.endswith("is DONE but its log says NEW") for p in problems)
