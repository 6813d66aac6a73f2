from fastapi import APIRouter

from communication_agent.api.deps import CurrentActor, SessionDep
from communication_agent.models.schemas.users import Me
from communication_agent.services import users

router = APIRouter(tags=["me"])


@router.get("/me", response_model=Me, summary="Who am I: the authenticated user and role")
async def read_me(session: SessionDep, actor: CurrentActor) -> Me:
    user = await users.get_acting_user(session, actor)
    return Me(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        auth=actor.type,
        token_id=actor.token_id,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )
