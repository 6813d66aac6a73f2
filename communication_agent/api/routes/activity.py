from typing import Annotated

from fastapi import APIRouter, Query

from communication_agent.api.deps import CurrentActor, SessionDep
from communication_agent.models.schemas.activity import ActivityRead, activity_read
from communication_agent.models.schemas.common import MAX_DB_INT, PageOf
from communication_agent.services import activity

router = APIRouter(tags=["activity"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]


@router.get(
    "/activity",
    response_model=PageOf[ActivityRead],
    summary="The activity log across all tickets, newest first",
)
async def list_activity(
    session: SessionDep,
    _actor: CurrentActor,
    ticket_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["ticket.state_changed"])] = None,
    actor_user_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Limit = 50,
) -> PageOf[ActivityRead]:
    page = await activity.list_activity(
        session,
        ticket_id=ticket_id,
        action=action,
        actor_user_id=actor_user_id,
        cursor=cursor,
        limit=limit,
    )
    return PageOf(items=[activity_read(e) for e in page.items], next_cursor=page.next_cursor)
