from __future__ import annotations

from datetime import datetime

from pydantic import Field

from communication_agent.models.enums import ActorType, Role
from communication_agent.models.schemas.common import Schema


class UserRef(Schema):
    id: int
    email: str
    display_name: str


class Me(Schema):
    id: int
    email: str
    display_name: str
    role: Role
    auth: ActorType = Field(description="How this request authenticated: `user` or `token`.")
    token_id: int | None = None
    created_at: datetime
    last_login_at: datetime | None
