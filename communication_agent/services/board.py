"""The board: one column per ticket state, each with its count and its first page of cards.

Every column is a keyset page over `(state, updated_at, id)` (an index), so the board costs the
same with 100 tickets or 100,000; counts are one GROUP BY over the same filters the columns use.
`DONE` shows only its most recent cards, like the others, and pages on when asked.

The counts are the one part that grows with the table: unfiltered, they are an index-only scan
of the small `(state)` index (about 7 ms at 100,000 tickets on PostgreSQL). A text search is a
set of ticket ids (see `tickets._text_filter`), so nothing joins the customer for a count.
All cards' summaries come in one query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Contact, Ticket, TriageResult, User
from communication_agent.models.enums import TicketState
from communication_agent.services.pagination import Page
from communication_agent.services.tickets import (
    TicketFilters,
    apply_filters,
    keyset_page,
    keyset_result,
)

COLUMN_SIZE = 20
BOARD_SORT = "-updated_at"  # the ticket that moved last is on top


@dataclass(slots=True)
class Card:
    """What a card shows, read as plain columns: the board draws 80 of them on every refresh,
    and building full ORM tickets with their contacts and assignees was half its cost."""

    id: int
    version: int
    state: str
    subject: str
    priority: str
    category: str | None
    created_at: datetime
    updated_at: datetime
    customer_name: str | None
    customer_email: str
    assignee: str | None  # display name, or email when there is none; None when unassigned
    summary: str = ""  # the newest triage summary, filled in for the whole board at once

    @property
    def customer(self) -> str:
        return self.customer_name or self.customer_email


@dataclass(frozen=True)
class Column:
    state: TicketState
    count: int
    cards: list[Card]
    next_cursor: str | None


_CARD_COLUMNS = (
    Ticket.id.label("id"),
    Ticket.version.label("version"),
    Ticket.state.label("state"),
    Ticket.subject.label("subject"),
    Ticket.priority.label("priority"),
    Ticket.category.label("category"),
    Ticket.created_at.label("created_at"),
    Ticket.updated_at.label("updated_at"),
    Contact.name.label("customer_name"),
    Contact.email.label("customer_email"),
    func.coalesce(func.nullif(User.display_name, ""), User.email).label("assignee"),
)


async def _summaries(session: AsyncSession, ticket_ids: list[int]) -> dict[int, str]:
    """The newest triage summary of each ticket (one query for the whole page)."""
    if not ticket_ids:
        return {}
    rows = await session.execute(
        select(TriageResult.ticket_id, TriageResult.summary)
        .where(TriageResult.ticket_id.in_(ticket_ids))
        .order_by(TriageResult.id)
    )
    return {ticket_id: summary for ticket_id, summary in rows}


async def counts(session: AsyncSession, filters: TicketFilters) -> dict[TicketState, int]:
    query = apply_filters(select(Ticket.state, func.count()).select_from(Ticket), filters)
    query = query.group_by(Ticket.state)
    found = {TicketState(state): count for state, count in (await session.execute(query)).all()}
    return {state: found.get(state, 0) for state in TicketState}


async def _page(
    session: AsyncSession,
    filters: TicketFilters,
    state: TicketState,
    cursor: str | None,
    limit: int,
) -> Page[Card]:
    """One state's page of cards, with the ticket list's filters and keyset paging."""
    query = (
        select(*_CARD_COLUMNS)
        .join(Contact, Contact.id == Ticket.contact_id)
        .outerjoin(User, User.id == Ticket.assignee_id)
    )
    query = apply_filters(query, replace(filters, states=(state,)))
    query = keyset_page(query, BOARD_SORT, cursor, limit)
    cards = [_card(row) for row in await session.execute(query)]
    return keyset_result(cards, BOARD_SORT, limit)


def _card(row: Row[*tuple[Any, ...]]) -> Card:
    """A row of `_CARD_COLUMNS`, by name: two timestamps swapped would type-check."""
    return Card(**row._mapping)


def _column(
    state: TicketState, count: int | None, page: Page[Card], summaries: dict[int, str]
) -> Column:
    for card in page.items:
        card.summary = summaries.get(card.id, "")
    total = count if count is not None else len(page.items)
    return Column(state, total, page.items, page.next_cursor)


async def column(
    session: AsyncSession,
    filters: TicketFilters,
    state: TicketState,
    *,
    count: int | None = None,
    cursor: str | None = None,
    limit: int = COLUMN_SIZE,
) -> Column:
    """One column's page of cards; `count` is the column's total when the caller has it."""
    page = await _page(session, filters, state, cursor, limit)
    summaries = await _summaries(session, [card.id for card in page.items])
    return _column(state, count, page, summaries)


async def board(
    session: AsyncSession, filters: TicketFilters, *, limit: int = COLUMN_SIZE
) -> list[Column]:
    """Every state's column; a state filter, if given, is ignored (the board shows all four)."""
    unfiltered_states = replace(filters, states=())
    totals = await counts(session, unfiltered_states)
    pages = {
        state: await _page(session, unfiltered_states, state, None, limit) for state in TicketState
    }
    shown = [card.id for page in pages.values() for card in page.items]
    summaries = await _summaries(session, shown)
    return [_column(state, totals[state], pages[state], summaries) for state in TicketState]
