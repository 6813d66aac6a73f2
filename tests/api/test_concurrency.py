"""Conflicting changes to one ticket at the same moment: exactly one wins, one log entry."""

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import ActivityEntry, Ticket
from communication_agent.models.enums import Role
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.live_server import cli_environment, live_server

TARGETS = ["DONE", "WAITING_OTHERS", "NEEDS_ACTION"]


async def _state_change_entries(
    sessionmaker: async_sessionmaker[AsyncSession], ticket_id: int
) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(
            ActivityEntry.ticket_id == ticket_id, ActivityEntry.action == "ticket.state_changed"
        )
        return int(await session.scalar(query) or 0)


async def test_simultaneous_state_changes_in_one_process(
    client: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    operators = [await factory.principal(Role.OPERATOR) for _ in range(6)]
    ticket = await factory.ticket()
    url = f"/api/v1/tickets/{ticket.id}/state"
    responses = await asyncio.gather(
        *(
            client.post(url, json={"state": TARGETS[i % 3], "version": 1}, headers=op.headers)
            for i, op in enumerate(operators)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "stale_version"
    }
    assert await _state_change_entries(sessionmaker, ticket.id) == 1


@pytest.mark.postgres_only
async def test_two_api_processes_racing_on_one_ticket(
    settings: Settings,
    factory: Factory,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    """Two `commagent serve` processes each get one conflicting change. The test holds the
    ticket's row lock until both requests are blocked on it, so the two transactions are
    guaranteed to overlap: both have read version 1 and both try to write."""
    first, second = await factory.principal(Role.OPERATOR), await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    url = settings.database.render_as_string(hide_password=False)
    env = cli_environment(database_url=url, secret_key=TEST_SECRET_KEY, data_dir=str(tmp_path))
    path = f"/api/v1/tickets/{ticket.id}/state"
    gate = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        with (
            live_server(env, tmp_path / "a.log") as server_a,
            live_server(env, tmp_path / "b.log") as server_b,
        ):
            async with httpx.AsyncClient(timeout=30) as http:
                lock = gate.transaction()
                await lock.start()
                await gate.execute("SELECT 1 FROM tickets WHERE id = $1 FOR UPDATE", ticket.id)
                done = asyncio.create_task(
                    http.post(
                        server_a + path, json={"state": "DONE", "version": 1}, headers=first.headers
                    )
                )
                waiting = asyncio.create_task(
                    http.post(
                        server_b + path,
                        json={"state": "WAITING_OTHERS", "version": 1},
                        headers=second.headers,
                    )
                )
                blocked = 0
                for _ in range(300):
                    blocked = await gate.fetchval(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                    if blocked == 2:
                        break
                    await asyncio.sleep(0.05)
                assert blocked == 2, "both requests should be waiting on the ticket's row lock"
                await lock.rollback()
                results = await asyncio.gather(done, waiting)
    finally:
        await gate.close()

    by_status = {r.status_code: r for r in results}
    assert sorted(by_status) == [200, 409], [r.text for r in results]
    loser = by_status[409].json()["error"]
    assert loser["code"] == "stale_version"
    assert loser["details"]["current_version"] == 2
    winner_state = by_status[200].json()["state"]
    async with sessionmaker() as session:
        stored = await session.get(Ticket, ticket.id)
        assert stored is not None
        assert (stored.state, stored.version) == (winner_state, 2)
    assert await _state_change_entries(sessionmaker, ticket.id) == 1
