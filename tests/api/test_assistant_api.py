"""The operator's triage and regenerate buttons, over the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import Ticket
from communication_agent.models.enums import Role
from tests.conftest import running_app
from tests.factories import Factory
from tests.llm_servers import OpenAITestServer
from tests.mail import raw_email
from tests.reasoning.support import ingest, support_mailbox

API = "/api/v1"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # No background loop: the test presses the buttons itself.
    async with running_app(settings.model_copy(update={"reasoning_enabled": False})) as (_, c):
        yield c


async def _ticket(sessionmaker: async_sessionmaker[AsyncSession], body: str) -> int:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(subject="Refund please", body=body))
    return await _newest_ticket(sessionmaker)


async def _newest_ticket(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        ticket_id = await session.scalar(select(Ticket.id).order_by(Ticket.id.desc()))
    assert ticket_id is not None
    return ticket_id


async def test_triage_and_regenerate_with_an_instruction(
    api: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    op = await factory.principal(Role.OPERATOR)
    ticket_id = await _ticket(sessionmaker, "You charged me twice this month, I want a refund.")
    triaged = await api.post(f"{API}/tickets/{ticket_id}/triage", headers=op.headers)
    assert triaged.status_code == 200, triaged.text
    assert triaged.json()["category"] == "billing"
    assert triaged.json()["routing"].startswith("a reply is needed")

    first = await api.post(f"{API}/tickets/{ticket_id}/drafts", headers=op.headers)
    assert first.status_code == 201, first.text
    shorter = await api.post(
        f"{API}/tickets/{ticket_id}/drafts",
        json={"instruction": "shorter, offer a refund"},
        headers=op.headers,
    )
    assert shorter.status_code == 201, shorter.text
    draft = shorter.json()
    assert draft["instruction"] == "shorter, offer a refund"
    assert "refund" in draft["body"].lower()
    assert len(draft["body"]) < len(first.json()["body"]) + 100
    assert draft["plan"][0]["action"]
    assert draft["citations"]

    detail = (await api.get(f"{API}/tickets/{ticket_id}", headers=op.headers)).json()
    assert detail["state"] == "NEEDS_ACTION"
    assert detail["latest_draft"]["id"] == draft["id"]
    assert detail["latest_triage"]["category"] == "billing"
    calls = (await api.get(f"{API}/tickets/{ticket_id}/model-calls", headers=op.headers)).json()
    assert [c["task"] for c in calls] == ["proposal", "proposal", "triage"]


async def test_viewers_cannot_and_bad_requests_get_clear_errors(
    api: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    op = await factory.principal(Role.OPERATOR)
    ticket_id = await _ticket(sessionmaker, "Where is my invoice?")
    for path in ("triage", "drafts"):
        refused = await api.post(f"{API}/tickets/{ticket_id}/{path}", headers=viewer.headers)
        assert refused.status_code == 403
        missing = await api.post(f"{API}/tickets/999999/{path}", headers=op.headers)
        assert missing.status_code == 404
        assert "999999" in missing.json()["error"]["message"]
    too_long = await api.post(
        f"{API}/tickets/{ticket_id}/drafts", json={"instruction": "x" * 2001}, headers=op.headers
    )
    assert too_long.status_code == 422
    assert "instruction" in too_long.json()["error"]["message"]
    mailbox = await support_mailbox(sessionmaker)
    await ingest(  # an autoresponder's ticket: nothing a customer wrote
        sessionmaker,
        mailbox,
        raw_email(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
    )
    automated = await _newest_ticket(sessionmaker)
    nothing = await api.post(f"{API}/tickets/{automated}/triage", headers=op.headers)
    assert nothing.status_code == 422
    assert "no customer message" in nothing.json()["error"]["message"]


async def test_a_failing_model_gives_502_with_the_reason_and_records_the_attempts(
    settings: Settings, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    op = await factory.principal(Role.OPERATOR)
    ticket_id = await _ticket(sessionmaker, "Please help")
    with OpenAITestServer() as server:
        server.responder = lambda _request: "I am not JSON at all"
        remote = settings.model_copy(
            update={
                "reasoning_enabled": False,
                "llm_provider": "openai",
                "llm_base_url": server.base_url,
                "llm_api_key": SecretStr(server.api_key),
                "llm_model": "test-model",
                "llm_max_attempts": 2,
            }
        )
        async with running_app(remote) as (_app, api):
            failed = await api.post(f"{API}/tickets/{ticket_id}/triage", headers=op.headers)
            assert failed.status_code == 502
            error = failed.json()["error"]
            assert error["code"] == "model_failed"
            assert "invalid triage output after 2 attempt(s)" in error["message"]
            calls = await api.get(f"{API}/tickets/{ticket_id}/model-calls", headers=op.headers)
            assert [c["outcome"] for c in calls.json()] == ["invalid_output", "invalid_output"]
            assert server.calls == 2
