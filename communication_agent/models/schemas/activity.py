from __future__ import annotations

from datetime import datetime
from typing import Any

from communication_agent.models.enums import ActorType
from communication_agent.models.schemas.common import Schema


class ActorRead(Schema):
    type: ActorType
    name: str
    user_id: int | None
    token_id: int | None


class ActivityRead(Schema):
    id: int
    ticket_id: int | None
    actor: ActorRead
    action: str
    details: dict[str, Any]
    created_at: datetime


def activity_read(entry: Any) -> ActivityRead:
    """Map a stored entry (flat actor columns) to the API shape (a nested actor)."""
    return ActivityRead(
        id=entry.id,
        ticket_id=entry.ticket_id,
        actor=ActorRead(
            type=entry.actor_type,
            name=entry.actor_name,
            user_id=entry.actor_user_id,
            token_id=entry.actor_token_id,
        ),
        action=entry.action,
        details=entry.details,
        created_at=entry.created_at,
    )
