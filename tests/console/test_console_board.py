"""The board page: columns with counts, cards, filters kept in links, paging, and moves."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import ActivityEntry, Ticket, TriageResult
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Priority, Role, TicketState
from tests.console.browser import page_csrf, sign_in
from tests.factories import Factory


def count_of(html: str, state: str) -> int:
    found = re.search(rf'data-count="{state}">(\d+)<', html)
    assert found, state
    return int(found.group(1))


def card_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-ticket="(\d+)"', html)]


async def test_columns_show_counts_and_cards_with_their_facts(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    urgent = await factory.ticket(
        subject="Printer on fire",
        priority=Priority.URGENT,
        category="technical",
        customer_name="Dana Doe",
        assignee_id=operator.user.id,
    )
    session.add(TriageResult(ticket_id=urgent.id, category="technical", priority="urgent",
                             summary="Their printer caught fire after the update."))  # fmt: skip
    await session.commit()
    await factory.ticket(state=TicketState.DONE)
    await factory.ticket(state=TicketState.DONE)
    await sign_in(client, operator.user.email)
    page = (await client.get("/board")).text
    assert count_of(page, "NEW") == 1
    assert count_of(page, "DONE") == 2
    assert count_of(page, "NEEDS_ACTION") == 0
    card = page[page.index(f'data-ticket="{urgent.id}"') :]
    card = card[: card.index("</li>")]
    for fact in ("Printer on fire", "Dana Doe", "urgent", "technical", "caught fire",
                 operator.user.email):  # fmt: skip
        assert fact in card, fact


async def test_filters_narrow_cards_and_counts_and_survive_the_self_refresh(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    mine = await factory.ticket(subject="Refund please", priority=Priority.HIGH,
                                assignee_id=operator.user.id, category="billing")  # fmt: skip
    other = await factory.ticket(subject="Where is my parcel", priority=Priority.LOW)
    await sign_in(client, operator.user.email)

    page = (await client.get("/board?mine=1")).text
    assert card_ids(page) == [mine.id]
    assert count_of(page, "NEW") == 1
    assert 'hx-get="/board?mine=1"' in page  # the refresh asks for the same filters

    assert card_ids((await client.get("/board?unassigned=1")).text) == [other.id]
    assert card_ids((await client.get("/board?priority=high")).text) == [mine.id]
    assert card_ids((await client.get("/board?category=billing")).text) == [mine.id]
    assert card_ids((await client.get("/board?q=parcel")).text) == [other.id]
    by_mailbox = (await client.get(f"/board?mailbox={mine.mailbox_id}")).text
    assert card_ids(by_mailbox) == [mine.id]
    assert f'<option value="{mine.mailbox_id}" selected>' in by_mailbox  # the menu keeps it


async def test_a_bad_filter_gets_a_clear_error_not_a_crash(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    await sign_in(client, operator.user.email)
    for query, message in (
        ("priority=someday", "Unknown priority"),
        ("category=nonsense", "Unknown category"),
        ("mailbox=abc", "Mailbox must be a mailbox id"),
    ):
        response = await client.get(f"/board?{query}")
        assert response.status_code == 422, query
        assert message in response.text


async def test_columns_page_through_every_card_without_repeats(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    mailbox = await factory.mailbox()
    start = utcnow() - timedelta(hours=1)
    created = [
        (await factory.ticket(mailbox=mailbox, created_at=start + timedelta(minutes=i))).id
        for i in range(27)
    ]
    await sign_in(client, operator.user.email)
    page = (await client.get("/board")).text
    first = card_ids(page)
    assert len(first) == 20
    assert first == sorted(created, reverse=True)[:20]  # newest activity first
    cursor = re.search(r'hx-get="/board/columns/NEW\?cursor=([^"&]+)', page)
    assert cursor
    more = await client.get(f"/board/columns/NEW?cursor={cursor.group(1)}")
    assert more.status_code == 200
    rest = card_ids(more.text)
    assert sorted(first + rest) == sorted(created)
    assert "Show more" not in more.text


async def test_moving_a_card_uses_the_state_service_and_returns_to_the_filtered_board(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    await sign_in(client, operator.user.email)
    csrf = await page_csrf(client)
    moved = await client.post(
        f"/tickets/{ticket.id}/state",
        data={
            "csrf_token": csrf,
            "state": "NEEDS_ACTION",
            "version": ticket.version,
            "back": "/board?priority=high",
        },
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == "/board?priority=high"
    stored = await session.get_one(Ticket, ticket.id, populate_existing=True)
    assert stored.state == "NEEDS_ACTION"
    logged = await session.scalar(
        select(ActivityEntry).where(
            ActivityEntry.ticket_id == ticket.id, ActivityEntry.action == "ticket.state_changed"
        )
    )
    assert logged is not None
    assert logged.actor_name == operator.user.email


async def test_an_invalid_move_is_explained(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    done = await factory.ticket(state=TicketState.DONE)
    await sign_in(client, operator.user.email)
    csrf = await page_csrf(client)
    form = {"csrf_token": csrf, "state": "WAITING_OTHERS", "version": done.version}
    page = await client.post(f"/tickets/{done.id}/state", data=form)
    assert page.status_code == 409
    assert "cannot move from DONE to WAITING_OTHERS; allowed targets: NEEDS_ACTION" in page.text
    fragment = await client.post(
        f"/tickets/{done.id}/state", data=form, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 409
    assert fragment.headers["HX-Retarget"] == "#flash"
    assert fragment.headers["HX-Push-Url"] == "false"  # a reload stays on the board
    assert "<html" not in fragment.text
    assert "allowed targets: NEEDS_ACTION" in fragment.text
    stored = await session.get_one(Ticket, done.id, populate_existing=True)
    assert stored.state == "DONE"


async def test_a_stale_move_is_refused_with_reload_advice(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    await sign_in(client, operator.user.email)
    csrf = await page_csrf(client)
    stale = await client.post(
        f"/tickets/{ticket.id}/state",
        data={"csrf_token": csrf, "state": "DONE", "version": ticket.version + 5},
    )
    assert stale.status_code == 409
    assert "reload it and try again" in stale.text


async def test_viewers_see_no_move_controls_and_cannot_move(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    await sign_in(client, viewer.user.email)
    page = await client.get("/board")
    assert str(ticket.id) in page.text
    assert 'action="/tickets/' not in page.text
    csrf = await page_csrf(client)
    refused = await client.post(
        f"/tickets/{ticket.id}/state",
        data={"csrf_token": csrf, "state": "DONE", "version": ticket.version},
    )
    assert refused.status_code == 403
    assert "needs the operator role" in refused.text
    stored = await session.get_one(Ticket, ticket.id, populate_existing=True)
    assert stored.state == "NEW"


async def test_reports_page_draws_the_summary_and_links_its_csv(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    await factory.ticket(category="billing")
    await factory.ticket(category="shipping", state=TicketState.DONE)
    await sign_in(client, viewer.user.email)
    today = utcnow().date()
    page = await client.get(f"/reports?start={today - timedelta(days=6)}&end={today}")
    assert page.status_code == 200
    html = page.text
    assert html.count("<svg viewBox") >= 3  # volume by state, by category, backlog
    assert f"{today.strftime('%d %b')}: billing 1" in html  # a bar's exact figure, on hover
    assert f"{today.strftime('%d %b')}: DONE 1" in html
    csv_link = re.search(r'href="(/api/v1/reports/summary\.csv\?[^"]+)"', html)
    assert csv_link
    csv = await client.get(csv_link.group(1).replace("&amp;", "&"))
    assert csv.status_code == 200
    assert csv.text.startswith("section,key,subkey,value")
    backwards = await client.get(f"/reports?start={today}&end={today - timedelta(days=3)}")
    assert backwards.status_code == 422
    assert "<html" in backwards.text
