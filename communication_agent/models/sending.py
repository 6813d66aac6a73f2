"""The outbox: approved replies waiting to be sent, exactly once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from communication_agent.models.base import Base, utcnow


class OutboxEntry(Base):
    """Written in the transaction that approves a draft; one per approval. Its id fixes the
    reply's Message-ID, so a retry after a crash can ask the provider whether the message
    already went out instead of sending it twice."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "send_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    message_id_header: Mapped[str | None] = mapped_column(String(255), unique=True)
    send_after: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
