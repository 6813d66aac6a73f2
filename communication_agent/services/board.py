"""The board: one column per ticket state, each with its count and its first page of cards.

Every column is a keyset page over `(state, updated_at, id)` (an index), so the board costs the
same with 100 tickets or 100,000; counts are one GROUP BY over the same filters the columns use.
`DONE` shows only its most recent cards, like the others, and pages on when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Contact, Ticket, TriageResult
from communication_agent.models.enums import TicketState
from communication_agent.services.tickets import TicketFilters, apply_filters, list_tickets

COLUMN_SIZE = 20
BOARD_SORT = "-updated_at"  # the ticket that moved last is on top


@dataclass(frozen=True)
class Card:
    ticket: Ticket
    summary: str


@dataclass(frozen=True)
class Column:
    state: TicketState
    count: int
    cards: list[Card]
    next_cursor: str | None


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
    query = apply_filters(
        select(Ticket.state, func.count())
        .select_from(Ticket)
        .join(Contact, Contact.id == Ticket.contact_id),
        filters,
    ).group_by(Ticket.state)
    found = {TicketState(state): count for state, count in (await session.execute(query)).all()}
    return {state: found.get(state, 0) for state in TicketState}


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
    page = await list_tickets(
        session,
        TicketFilters(**{**filters.__dict__, "states": (state,)}),
        sort=BOARD_SORT,
        cursor=cursor,
        limit=limit,
    )
    summaries = await _summaries(session, [ticket.id for ticket in page.items])
    cards = [Card(ticket, summaries.get(ticket.id, "")) for ticket in page.items]
    return Column(state, count if count is not None else len(cards), cards, page.next_cursor)


async def board(
    session: AsyncSession, filters: TicketFilters, *, limit: int = COLUMN_SIZE
) -> list[Column]:
    """Every state's column; a state filter, if given, is ignored (the board shows all four)."""
    unfiltered_states = TicketFilters(**{**filters.__dict__, "states": ()})
    totals = await counts(session, unfiltered_states)
    return [
        await column(session, unfiltered_states, state, count=totals[state], limit=limit)
        for state in TicketState
    ]
