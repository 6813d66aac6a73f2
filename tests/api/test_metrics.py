"""`GET /metrics`: who may read it, and the figures moving with real syncs, triage and sends.

Counters are per process and the test process builds many apps, so every check compares a
scrape before and after the action.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.models import Mailbox
from communication_agent.models.enums import Role, TicketState
from communication_agent.services import sending
from tests.conftest import running_app
from tests.factories import Factory, Principal
from tests.mail import raw_email
from tests.metrics import Samples, parse, value

SessionMaker = async_sessionmaker[AsyncSession]
SCRAPER_TOKEN = "scraper-token-0123456789abcdef"


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with a scraper token, and no background triage or sending to race with."""
    quiet = settings.model_copy(
        update={
            "metrics_token": SecretStr(SCRAPER_TOKEN),
            "reasoning_enabled": False,
            "sender_interval_seconds": 3600.0,
        }
    )
    async with running_app(quiet) as pair:
        yield pair


SCRAPER = {"Authorization": f"Bearer {SCRAPER_TOKEN}"}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=SCRAPER)
    assert response.status_code == 200, response.text
    return parse(response.text)


async def test_metrics_are_for_admins_and_the_scraper_token_only(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    for role in (Role.VIEWER, Role.OPERATOR):
        principal = await factory.principal(role)
        refused = await client.get("/metrics", headers=principal.headers)
        assert refused.status_code == 403, role
        assert "needs the admin role" in refused.json()["error"]["message"]
    admin = await factory.principal(Role.ADMIN)
    allowed = await client.get("/metrics", headers=admin.headers)
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain; version=")
    assert "commagent_database_up 1.0" in allowed.text
    openmetrics = await client.get(
        "/metrics", headers={**SCRAPER, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    wrong = {"Authorization": f"Bearer {SCRAPER_TOKEN}x"}
    assert (await client.get("/metrics", headers=wrong)).status_code == 401
    # The scraper token opens /metrics and nothing else.
    assert (await client.get("/api/v1/me", headers=SCRAPER)).status_code == 401


async def _local_mailbox(sessionmaker: SessionMaker, factory: Factory, folder: Path) -> Mailbox:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        await session.commit()
        return row


async def test_a_sync_moves_the_ingestion_counters_and_the_mailbox_gauges(
    client: httpx.AsyncClient, factory: Factory, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    mailbox = await _local_mailbox(sessionmaker, factory, tmp_path)
    (tmp_path / "sent").mkdir()
    (tmp_path / "1.eml").write_bytes(raw_email(message_id="<q1@x>", subject="Order"))
    (tmp_path / "2.eml").write_bytes(raw_email(message_id="<q2@x>", in_reply_to="<q1@x>"))
    (tmp_path / "sent" / "3.eml").write_bytes(
        raw_email(sender=mailbox.address, to="customer@example.org", in_reply_to="<q2@x>",
                  references=["<q1@x>", "<q2@x>"], message_id="<a1@x>", subject="Re: Order")
    )  # fmt: skip
    (tmp_path / "4.eml").write_bytes(b"Subject: no sender\n\nx")  # quarantined: not a message
    key = str(mailbox.id)
    before = await scrape(client)

    synced = await client.post(f"/api/v1/mailboxes/{mailbox.id}/sync", headers=operator.headers)
    assert synced.status_code == 200, synced.text
    after = await scrape(client)

    def moved(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    ingested = "commagent_messages_ingested_total"
    assert moved(ingested, mailbox=key, direction="inbound") == 2
    assert moved(ingested, mailbox=key, direction="outbound") == 1
    assert moved("commagent_sync_runs_total", mailbox=key, outcome="ok") == 1
    assert value(after, "commagent_sync_lag_seconds", mailbox=key) < 60
    assert value(after, "commagent_mailbox_state", mailbox=key, state="ok") == 1
    assert value(after, "commagent_mailbox_state", mailbox=key, state="failing") == 0
    assert value(after, "commagent_mailbox_info", mailbox=key, name=mailbox.name,
                 provider="local") == 1  # fmt: skip
    assert value(after, "commagent_reasoning_queue_depth", status="pending") >= 1

    # A second run finds nothing new; a broken folder counts as a failed run and an error.
    again = await client.post(f"/api/v1/mailboxes/{mailbox.id}/sync", headers=operator.headers)
    assert again.json()["duplicates"] == 4
    async with sessionmaker() as session:  # the folder is gone: the next run fails
        (await session.get_one(Mailbox, mailbox.id)).config = {"path": str(tmp_path / "gone")}
        await session.commit()
    failed = await client.post(f"/api/v1/mailboxes/{mailbox.id}/sync", headers=operator.headers)
    assert failed.status_code == 502
    final = await scrape(client)
    assert value(final, ingested, mailbox=key, direction="inbound") == value(
        after, ingested, mailbox=key, direction="inbound"
    )
    assert (
        value(final, "commagent_sync_runs_total", mailbox=key, outcome="failed")
        - value(before, "commagent_sync_runs_total", mailbox=key, outcome="failed")
        == 1
    )
    assert (
        value(final, "commagent_sync_errors_total", mailbox=key, kind="run")
        - value(before, "commagent_sync_errors_total", mailbox=key, kind="run")
        == 1
    )
    assert value(final, "commagent_mailbox_state", mailbox=key, state="failing") == 1
    assert value(final, "commagent_mailbox_consecutive_errors", mailbox=key) == 1


async def _synced_ticket(
    client: httpx.AsyncClient, sessionmaker: SessionMaker, factory: Factory, folder: Path,
    operator: Principal,
) -> int:  # fmt: skip
    mailbox = await _local_mailbox(sessionmaker, factory, folder)
    (folder / "1.eml").write_bytes(raw_email(message_id="<s1@x>", body="Where is my order?"))
    synced = await client.post(f"/api/v1/mailboxes/{mailbox.id}/sync", headers=operator.headers)
    assert synced.json()["new_tickets"] == 1
    [ticket] = (await client.get("/api/v1/tickets", headers=operator.headers)).json()["items"]
    return int(ticket["id"])


async def test_triage_counts_model_calls_and_a_send_empties_the_outbox(
    app_client: tuple[FastAPI, httpx.AsyncClient],
    factory: Factory,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    app, client = app_client
    operator = await factory.principal(Role.OPERATOR)
    ticket_id = await _synced_ticket(client, sessionmaker, factory, tmp_path, operator)
    before = await scrape(client)

    triaged = await client.post(f"/api/v1/tickets/{ticket_id}/triage", headers=operator.headers)
    assert triaged.status_code == 200, triaged.text
    calls = await scrape(client)
    labels = {"provider": "offline", "task": "triage", "outcome": "ok"}
    assert (
        value(calls, "commagent_model_calls_total", **labels)
        - value(before, "commagent_model_calls_total", **labels)
        == 1
    )
    histogram = "commagent_model_call_duration_seconds_count"
    assert value(calls, histogram, **labels) - value(before, histogram, **labels) == 1

    draft = (
        await client.post(f"/api/v1/tickets/{ticket_id}/drafts",
                          json={"body": "Hello,\n\nIt ships today."}, headers=operator.headers)
    ).json()  # fmt: skip
    approved = await client.post(
        f"/api/v1/drafts/{draft['id']}/approve",
        json={"version": draft["version"]},
        headers=operator.headers,
    )
    assert approved.status_code == 200, approved.text
    queued = await scrape(client)
    assert value(queued, "commagent_outbox_depth", status="pending") == 1
    assert value(queued, "commagent_outbox_depth", status="sending") == 0
    assert 0 <= value(queued, "commagent_outbox_oldest_pending_age_seconds") < 60

    sent = await sending.run_due(
        app.state.sessionmaker,
        app.state.provider_opener,
        owner="tests",
        lease=timedelta(minutes=2),
        state_after_send=TicketState.WAITING_OTHERS,
    )
    assert sent == 1
    done = await scrape(client)
    assert (
        value(done, "commagent_sends_total", outcome="sent")
        - value(queued, "commagent_sends_total", outcome="sent")
        == 1
    )
    assert value(done, "commagent_outbox_depth", status="pending") == 0
    assert value(done, "commagent_outbox_oldest_pending_age_seconds") == 0
    assert list((tmp_path / "sent").iterdir())  # the local folder's "sent" mail


async def test_http_latency_is_labelled_by_route_template_never_the_raw_url(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    before = await scrape(client)
    for _ in range(3):
        response = await client.get(f"/api/v1/tickets/{ticket.id}?q=secret", headers=viewer.headers)
        assert response.status_code == 200
    await client.get("/api/v1/tickets/999999", headers=viewer.headers)  # 404, same template
    await client.get(f"/no/such/page/{ticket.id}")
    await client.get("/static/app.css")
    after = await scrape(client)

    count = "commagent_http_request_duration_seconds_count"

    def moved(**labels: str) -> float:
        return value(after, count, **labels) - value(before, count, **labels)

    template = "/api/v1/tickets/{ticket_id}"
    assert moved(method="GET", route=template, status_class="2xx") == 3
    assert moved(method="GET", route=template, status_class="4xx") == 1
    assert moved(method="GET", route="unmatched", status_class="4xx") >= 1
    assert moved(method="GET", route="/static/{path}", status_class="2xx") == 1
    routes = {dict(labels).get("route", "") for metric, labels in after if metric == count}
    raw = [r for r in routes if "?" in r or any(part.isdigit() for part in r.split("/"))]
    assert not raw, routes


async def test_process_metrics_are_served_while_the_database_is_down(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    broken = create_engine(
        Settings(_env_file=None, database_url="postgresql://x:y@127.0.0.1:1/db").database
    )
    healthy, app.state.sessionmaker = app.state.sessionmaker, create_sessionmaker(broken)
    try:
        response = await client.get("/metrics", headers=SCRAPER)
    finally:
        app.state.sessionmaker = healthy
        await broken.dispose()
    assert response.status_code == 200
    assert "commagent_database_up 0.0" in response.text
    assert "commagent_http_request_duration_seconds_bucket" in response.text
    assert "commagent_outbox_depth" not in response.text
