"""`GET /readyz`: 503 only for the database and the schema; a mailbox in trouble is `degraded`
with 200; anonymous callers see states and counts, signed-in callers the details."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.core import migrations
from communication_agent.core.config import Settings
from communication_agent.core.db import create_engine
from communication_agent.models import Mailbox
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Role, TokenState
from tests.conftest import running_app
from tests.factories import Factory

SessionMaker = async_sessionmaker[AsyncSession]
FAILURE_TEXT = "Gmail said 500 for support-failing@company.example"


@pytest.fixture
async def stale_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with a stale threshold of one minute (and no background work to race with)."""
    quiet = settings.model_copy(
        update={
            "sync_stale_seconds": 60,
            "reasoning_enabled": False,
            "sender_interval_seconds": 3600,
        }
    )
    async with running_app(quiet) as pair:
        yield pair


async def _mailbox(sessionmaker: SessionMaker, factory: Factory, **fields: object) -> int:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        for name, value in fields.items():
            setattr(row, name, value)
        await session.commit()
    return mailbox.id


async def test_ready_when_the_database_and_schema_are_current(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "ready",
        "detailed": False,
        "database": {"status": "ok"},
        "schema": {"status": "current"},
        "mailboxes": {"total": 0, "by_state": {}, "items": []},
    }


async def test_every_mailbox_state_is_reported_and_trouble_is_degraded_not_unready(
    stale_app: tuple[FastAPI, httpx.AsyncClient], sessionmaker: SessionMaker, factory: Factory
) -> None:
    _app, client = stale_app
    now = utcnow()
    ids = {
        "ok": await _mailbox(sessionmaker, factory, last_sync_succeeded_at=now),
        "pending": await _mailbox(sessionmaker, factory),
        "syncing": await _mailbox(
            sessionmaker, factory, lease_owner="worker:x", lease_expires_at=now + timedelta(minutes=1)
        ),
        "failing": await _mailbox(
            sessionmaker, factory, consecutive_errors=3, last_error=FAILURE_TEXT,
            last_sync_succeeded_at=now - timedelta(hours=2),
        ),
        "needs_reauth": await _mailbox(
            sessionmaker, factory, token_state=TokenState.NEEDS_REAUTH.value, consecutive_errors=1,
            last_error="invalid_grant",
        ),
        "stale": await _mailbox(
            sessionmaker, factory, last_sync_succeeded_at=now - timedelta(minutes=5)
        ),
    }  # fmt: skip
    await _mailbox(sessionmaker, factory, is_active=False, consecutive_errors=9)  # not reported

    anonymous = await client.get("/readyz")
    assert anonymous.status_code == 200  # one broken mailbox keeps no process out of rotation
    body = anonymous.json()
    assert body["status"] == "degraded"
    assert body["detailed"] is False
    assert body["mailboxes"]["total"] == 6
    assert body["mailboxes"]["by_state"] == dict.fromkeys(ids, 1)
    assert body["mailboxes"]["items"] == [{"id": i, "state": s} for s, i in ids.items()]
    assert "support-failing" not in anonymous.text  # no names, addresses or error texts
    assert "revision" not in body["schema"]

    viewer = await factory.principal(Role.VIEWER)
    detailed = (await client.get("/readyz", headers=viewer.headers)).json()
    assert detailed["detailed"] is True
    assert (
        detailed["schema"]["revision"] == detailed["schema"]["head"] == migrations.head_revision()
    )
    failing = next(m for m in detailed["mailboxes"]["items"] if m["id"] == ids["failing"])
    assert failing["state"] == "failing"
    assert failing["consecutive_errors"] == 3
    assert failing["last_error"] == FAILURE_TEXT
    assert failing["name"].startswith("support-")
    assert failing["provider"] == "local"
    assert 7100 < failing["lag_seconds"] < 7300
    ok = next(m for m in detailed["mailboxes"]["items"] if m["id"] == ids["ok"])
    assert ok["lag_seconds"] < 60
    assert ok["last_success_at"] is not None


async def test_a_failing_mailbox_alone_is_not_stale_without_a_threshold(
    client: httpx.AsyncClient, sessionmaker: SessionMaker, factory: Factory
) -> None:
    """No sync interval and no stale threshold configured: a quiet mailbox is simply `ok`."""
    long_ago = utcnow() - timedelta(days=30)
    quiet = await _mailbox(sessionmaker, factory, last_sync_succeeded_at=long_ago)
    body = (await client.get("/readyz")).json()
    assert body["status"] == "ready"
    assert body["mailboxes"]["items"] == [{"id": quiet, "state": "ok"}]


async def test_bad_credentials_get_the_anonymous_answer_not_an_error(
    client: httpx.AsyncClient,
) -> None:
    for headers in ({"Authorization": "Bearer cat_not-a-token"}, {"Cookie": "ca_session=nope"}):
        response = await client.get("/readyz", headers=headers)
        assert response.status_code == 200
        assert response.json()["detailed"] is False


def _previous_revision() -> str:
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    down = scripts.get_revision(migrations.head_revision()).down_revision
    assert isinstance(down, str)
    return down


@pytest.mark.parametrize(
    ("revision", "state"), [("previous", "behind"), ("9999_from_the_future", "unknown_revision")]
)
async def test_unready_when_the_schema_is_not_the_one_the_code_expects(
    app_client: tuple[FastAPI, httpx.AsyncClient],
    engine: AsyncEngine,
    factory: Factory,
    revision: str,
    state: str,
) -> None:
    _app, client = app_client
    viewer = await factory.principal(Role.VIEWER)
    target = _previous_revision() if revision == "previous" else revision
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": target})
    try:
        response = await client.get("/readyz", headers=viewer.headers)
    finally:  # the PostgreSQL scratch database is shared by the whole run
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE alembic_version SET version_num = :v"),
                {"v": migrations.head_revision()},
            )
    assert response.status_code == 503
    assert response.json() == {
        "status": "unready",
        "detailed": False,  # the tables credentials live in are not trusted either
        "database": {"status": "ok"},
        "schema": {"status": state},
    }
    assert (await client.get("/readyz")).status_code == 200  # back to current


@contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung database)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def _unreachable_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections are refused


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_unready_when_the_database_is_unreachable_or_too_slow(
    settings: Settings, fault: str
) -> None:
    fast = settings.model_copy(update={"readyz_timeout_seconds": 0.5})
    async with running_app(fast) as (app, client):
        with _silent_server() as hung:
            port = _unreachable_port() if fault == "refused" else hung
            broken = create_engine(
                Settings(
                    _env_file=None, database_url=f"postgresql://x:y@127.0.0.1:{port}/db"
                ).database
            )
            healthy, app.state.engine = app.state.engine, broken
            try:
                started = asyncio.get_running_loop().time()
                response = await client.get("/readyz")
                elapsed = asyncio.get_running_loop().time() - started
            finally:
                app.state.engine = healthy
                await broken.dispose()
    assert response.status_code == 503
    expected = "unreachable" if fault == "refused" else "timeout"
    assert response.json() == {
        "status": "unready",
        "detailed": False,
        "database": {"status": expected},
        "schema": {},
    }
    assert elapsed < 3
