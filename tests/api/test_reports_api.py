"""The reports API over the real application: JSON figures, the CSV download and the errors
that say how to fix a bad window."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Ticket
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Role, TicketState
from tests.factories import Factory

URL = "/api/v1/reports/summary"
MARCH_1 = datetime(2025, 3, 1, tzinfo=UTC)
MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_a_viewer_gets_the_figures_for_a_window(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    first = await factory.ticket(created_at=MARCH_1, category="billing")
    await factory.ticket(created_at=MARCH_1 + timedelta(days=2), state=TicketState.DONE)
    await session.execute(
        update(Ticket)
        .where(Ticket.id == first.id)
        .values(first_response_at=MARCH_1 + timedelta(seconds=300))
    )
    await session.commit()

    response = await client.get(URL, params=MARCH, headers=viewer.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"], body["mailbox_id"]) == ("2025-03-01", "2025-03-31", None)
    assert body["tickets_created"] == 2
    assert len(body["volume"]) == 31
    assert body["volume"][0] == {
        "day": "2025-03-01",
        "total": 1,
        "by_state": {"NEW": 1, "NEEDS_ACTION": 0, "WAITING_OTHERS": 0, "DONE": 0},
        "by_category": {"billing": 1, "uncategorised": 0},
    }
    assert body["volume"][2]["by_state"]["DONE"] == 1
    assert body["first_response"] == {"count": 1, "median_seconds": 300.0, "p90_seconds": 300.0}
    assert body["resolution"] == {"count": 1, "median_seconds": 0.0, "p90_seconds": 0.0}
    assert [b["label"] for b in body["backlog"]] == [
        "<1 day",
        "1-3 days",
        "3-7 days",
        "7-30 days",
        ">30 days",
    ]
    assert body["backlog"][-1]["total"] == 1  # the NEW ticket of March, open since
    assert body["draft_acceptance"] == {
        "sent": 0, "unchanged": 0, "lightly_edited": 0, "rewritten": 0, "human_written": 0,
    }  # fmt: skip
    assert body["operators"] == []


async def test_the_default_window_is_the_last_30_days(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    await factory.ticket()
    body = (await client.get(URL, headers=viewer.headers)).json()
    today = utcnow().date()
    assert body["end"] == today.isoformat()
    assert body["start"] == (today - timedelta(days=29)).isoformat()
    assert len(body["volume"]) == 30
    assert body["volume"][-1]["total"] == 1


async def test_one_mailbox_and_an_unknown_one(client: httpx.AsyncClient, factory: Factory) -> None:
    viewer = await factory.principal(Role.VIEWER)
    mailbox = await factory.mailbox()
    await factory.ticket(mailbox=mailbox, created_at=MARCH_1)
    await factory.ticket(created_at=MARCH_1)
    params = {**MARCH, "mailbox_id": str(mailbox.id)}
    body = (await client.get(URL, params=params, headers=viewer.headers)).json()
    assert (body["mailbox_id"], body["tickets_created"]) == (mailbox.id, 1)

    missing = await client.get(URL, params={"mailbox_id": "999999"}, headers=viewer.headers)
    assert missing.status_code == 404
    assert _error(missing)["message"] == "Mailbox 999999 does not exist."


async def test_a_bad_window_is_refused_with_what_to_fix(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    for path in (URL, f"{URL}.csv"):
        backwards = await client.get(
            path, params={"start": "2025-03-10", "end": "2025-03-01"}, headers=viewer.headers
        )
        assert backwards.status_code == 422
        assert _error(backwards)["code"] == "invalid_input"
        assert _error(backwards)["message"] == (
            "The report window ends (2025-03-01) before it starts (2025-03-10); "
            "choose an end on or after the start."
        )
        too_long = await client.get(
            path, params={"start": "2023-01-01", "end": "2025-03-01"}, headers=viewer.headers
        )
        assert too_long.status_code == 422
        assert "at most 366" in _error(too_long)["message"]
        malformed = await client.get(path, params={"start": "March"}, headers=viewer.headers)
        assert malformed.status_code == 422
        assert _error(malformed)["code"] == "validation_error"
        assert "start" in _error(malformed)["message"]


async def test_the_csv_download(client: httpx.AsyncClient, factory: Factory) -> None:
    viewer = await factory.principal(Role.VIEWER)
    await factory.ticket(created_at=MARCH_1 + timedelta(hours=5), category="bug")

    response = await client.get(f"{URL}.csv", params=MARCH, headers=viewer.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="report-2025-03-01-2025-03-31.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["section", "key", "subkey", "value"]
    assert ["volume", "2025-03-01", "total", "1"] in rows
    assert ["volume_by_category", "2025-03-01", "bug", "1"] in rows
    assert ["first_response", "median_seconds", "", ""] in rows
    assert sum(1 for r in rows if r[0] == "volume") == 31
    assert {r[0] for r in rows[1:]} == {
        "window",
        "volume",
        "volume_by_state",
        "volume_by_category",
        "first_response",
        "resolution",
        "backlog",
        "draft_acceptance",
    }  # no operators did anything


async def test_reports_need_authentication(client: httpx.AsyncClient) -> None:
    for path in (URL, f"{URL}.csv"):
        response = await client.get(path, params=MARCH)
        assert response.status_code == 401
        assert _error(response)["code"] == "not_authenticated"
