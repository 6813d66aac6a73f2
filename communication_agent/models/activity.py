"""The append-only activity log: who did what to which ticket, and when.

Append-only is enforced twice: no code path updates or deletes entries, and the migration installs
database triggers that reject UPDATE and DELETE on this table on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from communication_agent.models.base import Base, JSONType, utcnow

if TYPE_CHECKING:
    from communication_agent.models.tickets import Ticket


class ActivityEntry(Base):
    __tablename__ = "activity_log"
    __table_args__ = (Index("ix_activity_log_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    actor_type: Mapped[str] = mapped_column(String(10))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    actor_name: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ticket: Mapped[Ticket | None] = relationship(lazy="raise")  # for batched writes only
