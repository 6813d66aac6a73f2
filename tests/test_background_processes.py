"""Background sync in real processes: several workers share a mailbox safely; serve polls."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import ActivityEntry, Mailbox, Message
from communication_agent.models.enums import Role
from communication_agent.services import mailboxes
from communication_agent.services.actors import Actor
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.gmail_server import Fault, GmailTestServer
from tests.live_server import COMMAGENT, cli_environment, live_server
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]


async def _count(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def _wait_for(sessionmaker: SessionMaker, expected: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (count := await _count(sessionmaker)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return count


@pytest.mark.postgres_only
async def test_three_workers_share_one_mailbox_without_overlap_or_duplicates(
    settings: Settings, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    with GmailTestServer() as gmail:
        for i in range(150):
            gmail.add_message(raw_email(message_id=f"<w{i}@x>", subject=f"Question {i}"))
        gmail.inject(
            Fault("messages.get", status=None, delay=0.01, times=10_000)
        )  # slow: leases are contended
        async with sessionmaker() as session:
            await mailboxes.connect_gmail(
                session,
                Actor.system("tests"),
                address=gmail.state.address,
                refresh_token=gmail.issue_refresh_token(),
                secret_key=TEST_SECRET_KEY,
            )
        env = cli_environment(
            database_url=settings.database.render_as_string(hide_password=False),
            secret_key=TEST_SECRET_KEY,
            data_dir=str(tmp_path),
            **gmail.client_settings(),
        )
        workers = [
            subprocess.Popen(
                [COMMAGENT, "worker", "--interval", "0.3"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            assert await _wait_for(sessionmaker, 150, 90) == 150
            for i in range(150, 200):
                gmail.add_message(raw_email(message_id=f"<w{i}@x>", subject=f"Question {i}"))
            assert await _wait_for(sessionmaker, 200, 60) == 200
            await asyncio.sleep(1.0)  # a few more rounds: nothing new must appear
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outputs = [worker.communicate(timeout=30)[0] for worker in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], outputs

    assert await _count(sessionmaker) == 200
    async with sessionmaker() as session:
        ids = (await session.scalars(select(Message.message_id_header))).all()
        assert len(set(ids)) == 200
        runs = (
            await session.scalars(
                select(ActivityEntry).where(ActivityEntry.action == "mailbox.synced")
            )
        ).all()
    spans = sorted(
        (
            datetime.fromisoformat(r.details["started_at"]),
            datetime.fromisoformat(r.details["finished_at"]),
            r.details["owner"],
        )
        for r in runs
    )
    assert len(spans) >= 3
    for (_start, end, owner), (next_start, _next_end, next_owner) in itertools.pairwise(spans):
        assert end <= next_start, f"runs of {owner} and {next_owner} overlapped"


async def test_serve_polls_mailboxes_in_the_background(
    settings: Settings, factory: Factory, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(raw_email(message_id="<poll1@x>"))
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        await session.commit()
    viewer = await factory.principal(Role.VIEWER)
    env = cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "data"),
        sync_interval_seconds="1",
    )
    with live_server(env, tmp_path / "serve.log") as base_url:
        assert await _wait_for(sessionmaker, 1, 30) == 1
        (folder / "2.eml").write_bytes(raw_email(message_id="<poll2@x>"))
        assert await _wait_for(sessionmaker, 2, 30) == 2
        async with httpx.AsyncClient() as http:
            listed = (await http.get(f"{base_url}/api/v1/tickets", headers=viewer.headers)).json()
        assert len(listed["items"]) == 2
