from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status

from communication_agent.api.deps import CurrentActor, OperatorActor, SessionDep, TicketId
from communication_agent.models.enums import Priority, TicketState
from communication_agent.models.schemas.activity import ActivityRead, activity_read
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse, PageOf
from communication_agent.models.schemas.tickets import (
    Assignment,
    NoteCreate,
    NoteRead,
    StateChange,
    TicketDetailRead,
    TicketSummary,
    ticket_detail_read,
)
from communication_agent.services import tickets
from communication_agent.services.actors import Actor

router = APIRouter(prefix="/tickets", tags=["tickets"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the last page.")]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "Invalid transition or stale version."}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such ticket."}
}


def _assignee_filter(assignee: str | None, actor: Actor) -> tuple[int | None, bool]:
    """Translate `me`, `none` or a user id into (assignee_id, unassigned)."""
    if assignee is None:
        return None, False
    if assignee == "none":
        return None, True
    if assignee == "me":
        return actor.user_id, False
    return int(assignee), False


@router.get("", response_model=PageOf[TicketSummary], summary="List and search tickets")
async def list_tickets(
    session: SessionDep,
    actor: CurrentActor,
    state: Annotated[list[TicketState] | None, Query(description="Repeat for several.")] = None,
    priority: Annotated[list[Priority] | None, Query(description="Repeat for several.")] = None,
    assignee: Annotated[
        str | None,
        Query(pattern=r"^(me|none|[1-9][0-9]{0,8})$", description="`me`, `none` or a user id."),
    ] = None,
    mailbox_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    category: Annotated[str | None, Query(max_length=50)] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in subject, customer or messages.")
    ] = None,
    sort: Annotated[
        Literal["-created_at", "created_at", "-updated_at", "updated_at"],
        Query(description="Newest first with a leading `-`."),
    ] = "-created_at",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> PageOf[TicketSummary]:
    assignee_id, unassigned = _assignee_filter(assignee, actor)
    filters = tickets.TicketFilters(
        states=tuple(state or ()),
        priorities=tuple(priority or ()),
        assignee_id=assignee_id,
        unassigned=unassigned,
        mailbox_id=mailbox_id,
        category=category,
        text=q,
    )
    page = await tickets.list_tickets(session, filters, sort=sort, cursor=cursor, limit=limit)
    return PageOf(
        items=[TicketSummary.model_validate(t) for t in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{ticket_id}",
    response_model=TicketDetailRead,
    responses=NOT_FOUND,
    summary="A ticket with its messages, notes, latest triage and latest draft",
)
async def get_ticket(
    session: SessionDep, _actor: CurrentActor, ticket_id: TicketId
) -> TicketDetailRead:
    detail = await tickets.get_ticket_detail(session, ticket_id)
    return ticket_detail_read(
        detail.ticket,
        messages=detail.messages,
        notes=detail.notes,
        latest_triage=detail.latest_triage,
        latest_draft=detail.latest_draft,
    )


@router.post(
    "/{ticket_id}/state",
    response_model=TicketSummary,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Move a ticket to another state",
)
async def change_state(
    session: SessionDep, actor: OperatorActor, ticket_id: TicketId, body: StateChange
) -> TicketSummary:
    ticket = await tickets.change_state(
        session,
        actor,
        ticket_id,
        target=body.state,
        expected_version=body.version,
        reason=body.reason,
    )
    return TicketSummary.model_validate(ticket)


@router.post(
    "/{ticket_id}/assign",
    response_model=TicketSummary,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Assign a ticket to an operator, or unassign it",
)
async def assign(
    session: SessionDep, actor: OperatorActor, ticket_id: TicketId, body: Assignment
) -> TicketSummary:
    ticket = await tickets.assign(
        session, actor, ticket_id, assignee_id=body.assignee_id, expected_version=body.version
    )
    return TicketSummary.model_validate(ticket)


@router.post(
    "/{ticket_id}/notes",
    response_model=NoteRead,
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND,
    summary="Add an internal note (never sent to the customer)",
)
async def add_note(
    session: SessionDep, actor: OperatorActor, ticket_id: TicketId, body: NoteCreate
) -> NoteRead:
    note = await tickets.add_note(session, actor, ticket_id, body=body.body)
    return NoteRead.model_validate(note)


@router.get(
    "/{ticket_id}/activity",
    response_model=PageOf[ActivityRead],
    responses=NOT_FOUND,
    summary="The activity log of one ticket, newest first",
)
async def ticket_activity(
    session: SessionDep,
    _actor: CurrentActor,
    ticket_id: TicketId,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> PageOf[ActivityRead]:
    page = await tickets.ticket_activity(session, ticket_id, cursor=cursor, limit=limit)
    return PageOf(items=[activity_read(e) for e in page.items], next_cursor=page.next_cursor)
