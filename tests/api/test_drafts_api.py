"""Reviewing drafts over the API: edit (version or If-Match), approve, discard, recall, retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.offline_model import OfflineReasoningModel
from communication_agent.core.config import Settings
from communication_agent.models.enums import Role
from tests.conftest import running_app
from tests.factories import Factory
from tests.mail import raw_email
from tests.reasoning.support import ingest, support_mailbox, work

API = "/api/v1"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    quiet = settings.model_copy(
        update={"reasoning_enabled": False, "sender_interval_seconds": 3600.0}
    )
    async with running_app(quiet) as (_app, client):
        yield client


async def _proposal(
    sessionmaker: async_sessionmaker[AsyncSession], api: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, object]:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(
        sessionmaker, mailbox, raw_email(subject="Refund", body="Charged twice, refund one.")
    )
    await work(sessionmaker, OfflineReasoningModel())
    tickets = (await api.get(f"{API}/tickets", headers=headers)).json()["items"]
    detail = (await api.get(f"{API}/tickets/{tickets[0]['id']}", headers=headers)).json()
    draft: dict[str, object] = detail["latest_draft"]
    assert draft["status"] == "proposed"
    return draft


async def test_edit_with_if_match_then_approve_records_the_change(
    api: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    op = await factory.principal(Role.OPERATOR)
    draft = await _proposal(sessionmaker, api, op.headers)
    url = f"{API}/drafts/{draft['id']}"
    edited = await api.patch(
        url,
        json={"body": str(draft["body"]) + "\nP.S. Sorry!"},
        headers={**op.headers, "If-Match": '"1"'},
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["status"], edited.json()["version"]) == ("edited", 2)
    stale = await api.patch(url, json={"body": "other", "version": 1}, headers=op.headers)
    assert stale.status_code == 409
    details = stale.json()["error"]["details"]
    assert (details["current_version"], details["current_body"]) == (2, edited.json()["body"])
    missing = await api.patch(url, json={"body": "x"}, headers=op.headers)
    assert missing.status_code == 422
    assert "If-Match" in missing.json()["error"]["message"]
    superscript_two = "\u00b2".encode("latin-1")  # a digit to str.isdigit(), not to int()
    odd = await api.patch(
        url,
        json={"body": "x"},
        headers=[
            *((k.encode(), v.encode()) for k, v in op.headers.items()),
            (b"If-Match", superscript_two),
        ],
    )
    assert odd.status_code == 422

    approved = await api.post(f"{url}/approve", json={"version": 2}, headers=op.headers)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["approved_by_id"]) == ("approved", op.user.id)
    assert 0 < body["edit_distance"] < 0.2  # a P.S. added to the proposal
    versions = (await api.get(f"{url}/versions", headers=op.headers)).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["author"].startswith("model:offline")
    again = await api.patch(url, json={"body": "late", "version": 3}, headers=op.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_draft_state"
    recalled = await api.post(f"{url}/recall", headers=op.headers)
    assert recalled.json()["status"] == "edited"


async def test_viewers_read_but_cannot_change_drafts(
    api: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    op = await factory.principal(Role.OPERATOR)
    draft = await _proposal(sessionmaker, api, op.headers)
    url = f"{API}/drafts/{draft['id']}"
    assert (await api.get(url, headers=viewer.headers)).status_code == 200
    for method, path, payload in (
        ("PATCH", "", {"body": "x", "version": 1}),
        ("POST", "/approve", {"version": 1}),
        ("POST", "/discard", {"version": 1}),
        ("POST", "/recall", None),
        ("POST", "/retry", None),
    ):
        answer = await api.request(method, url + path, json=payload, headers=viewer.headers)
        assert answer.status_code == 403, (method, path)
    assert (await api.get(f"{API}/drafts/999999", headers=op.headers)).status_code == 404


async def test_an_operator_writes_a_draft_and_discards_it(
    api: httpx.AsyncClient, factory: Factory
) -> None:
    op = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    written = await api.post(
        f"{API}/tickets/{ticket.id}/drafts", json={"body": "Hello, done."}, headers=op.headers
    )
    assert written.status_code == 201, written.text
    assert written.json()["status"] == "edited"
    assert written.json()["author"].startswith(op.user.email)  # the actor, as in the log
    blank = await api.post(
        f"{API}/tickets/{ticket.id}/drafts", json={"body": "  "}, headers=op.headers
    )
    assert blank.status_code == 422
    discarded = await api.post(
        f"{API}/drafts/{written.json()['id']}/discard", json={"version": 1}, headers=op.headers
    )
    assert discarded.json()["status"] == "discarded"
    retry = await api.post(f"{API}/drafts/{written.json()['id']}/retry", headers=op.headers)
    assert retry.status_code == 409
    assert "only a failed send" in retry.json()["error"]["message"]
