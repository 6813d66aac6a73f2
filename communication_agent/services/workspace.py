"""Everything the ticket page shows, gathered in one place: the conversation, the customer's
other tickets, triage, the draft with its outbox entry, notes, activity and the neighbours
for next/previous navigation (in board order, within the ticket's state)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import ActivityEntry, OutboxEntry, Ticket, User
from communication_agent.models.enums import DraftStatus, Role, TicketState
from communication_agent.services import activity, drafts
from communication_agent.services.state_machine import allowed_targets
from communication_agent.services.text_diff import Piece, word_diff
from communication_agent.services.tickets import TicketDetail, get_ticket_detail

EARLIER_TICKETS = 10
TIMELINE_ENTRIES = 50


@dataclass(frozen=True)
class DraftView:
    """The draft with what may be done with it now."""

    editable: bool
    approvable: bool
    discardable: bool
    recallable: bool
    retryable: bool
    diff: list[Piece] | None  # proposal -> current text; None when there was no proposal
    outbox: OutboxEntry | None


@dataclass(frozen=True)
class Workspace:
    detail: TicketDetail
    allowed_states: tuple[TicketState, ...]
    earlier_tickets: list[Ticket]
    operators: list[User]
    user_names: dict[int, str]
    timeline: list[ActivityEntry]
    draft: DraftView | None
    previous_id: int | None
    next_id: int | None


async def _neighbours(session: AsyncSession, ticket: Ticket) -> tuple[int | None, int | None]:
    """Board order is newest activity first: "next" is the card below, "previous" above."""
    same_state = Ticket.state == ticket.state
    below = or_(
        Ticket.updated_at < ticket.updated_at,
        and_(Ticket.updated_at == ticket.updated_at, Ticket.id < ticket.id),
    )
    above = or_(
        Ticket.updated_at > ticket.updated_at,
        and_(Ticket.updated_at == ticket.updated_at, Ticket.id > ticket.id),
    )
    next_id = await session.scalar(
        select(Ticket.id)
        .where(same_state, below)
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(1)
    )
    previous_id = await session.scalar(
        select(Ticket.id)
        .where(same_state, above)
        .order_by(Ticket.updated_at.asc(), Ticket.id.asc())
        .limit(1)
    )
    return previous_id, next_id


async def _draft_view(session: AsyncSession, detail: TicketDetail) -> DraftView | None:
    draft = detail.latest_draft
    if draft is None:
        return None
    status = DraftStatus(draft.status)
    outbox = await session.scalar(
        select(OutboxEntry)
        .where(OutboxEntry.draft_id == draft.id)
        .order_by(OutboxEntry.id.desc())
        .limit(1)
    )
    waiting = outbox is not None and outbox.status == "pending" and outbox.attempts == 0
    return DraftView(
        editable=status in drafts.EDITABLE,
        approvable=status in drafts.APPROVABLE,
        discardable=status in drafts.DISCARDABLE,
        recallable=status in {DraftStatus.APPROVED, DraftStatus.SENDING} and waiting,
        retryable=status is DraftStatus.FAILED and outbox is not None,
        diff=word_diff(draft.proposed_body, draft.body) if draft.proposed_body else None,
        outbox=outbox,
    )


async def load(session: AsyncSession, ticket_id: int) -> Workspace:
    detail = await get_ticket_detail(session, ticket_id)
    ticket = detail.ticket
    earlier = await session.scalars(
        select(Ticket)
        .where(Ticket.contact_id == ticket.contact_id, Ticket.id != ticket.id)
        .order_by(Ticket.created_at.desc())
        .limit(EARLIER_TICKETS)
    )
    users = list(await session.scalars(select(User).order_by(User.display_name, User.email)))
    operators = [u for u in users if u.is_active and Role(u.role).includes(Role.OPERATOR)]
    timeline = await activity.list_activity(session, ticket_id=ticket_id, limit=TIMELINE_ENTRIES)
    previous_id, next_id = await _neighbours(session, ticket)
    return Workspace(
        detail=detail,
        allowed_states=allowed_targets(TicketState(ticket.state)),
        earlier_tickets=list(earlier),
        operators=operators,
        user_names={u.id: u.display_name or u.email for u in users},
        timeline=timeline.items,
        draft=await _draft_view(session, detail),
        previous_id=previous_id,
        next_id=next_id,
    )
