"""Tickets and what hangs off them: internal notes, model triage results and reply drafts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from communication_agent.models.base import Base, JSONType, trigram_index, utcnow
from communication_agent.models.enums import Priority, TicketState

if TYPE_CHECKING:
    from communication_agent.models.mail import Contact, Mailbox
    from communication_agent.models.users import User


class Ticket(Base):
    """A customer conversation. `version` is bumped by every change to the ticket row, so two
    operators acting on the same ticket cannot silently overwrite each other."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_updated_at_id", "updated_at", "id"),
        # The board reads each state's column newest-activity first; the ticket list's default
        # order is newest first. Both stay index scans at 100,000 tickets.
        Index("ix_tickets_state_updated_at_id", "state", "updated_at", "id"),
        # The board's per-state counts: four distinct keys deduplicate into a tiny index, so
        # PostgreSQL counts 100,000 tickets with an index-only scan (7 ms, against 17 ms for a
        # scan of the table). It replaces `(state, id)`, which no query orders by any more.
        Index("ix_tickets_state", "state"),
        trigram_index("ix_tickets_subject_trgm", "subject"),
        Index("ix_tickets_created_at_id", "created_at", "id"),
        Index("ix_tickets_contact_id_created_at", "contact_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20), default=TicketState.NEW.value)
    priority: Mapped[str] = mapped_column(String(10), default=Priority.NORMAL.value, index=True)
    category: Mapped[str | None] = mapped_column(String(50), index=True)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_customer_message_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    # Loaded explicitly (selectinload/joinedload) where needed: an implicit lazy load would be
    # hidden blocking I/O under asyncio, so it raises instead.
    contact: Mapped[Contact] = relationship(lazy="raise")
    mailbox: Mapped[Mailbox] = relationship(lazy="raise")
    assignee: Mapped[User | None] = relationship(lazy="raise")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class Note(Base):
    """An internal note: visible to operators, never sent to the customer."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TriageResult(Base):
    __tablename__ = "triage_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    category: Mapped[str] = mapped_column(String(50))
    priority: Mapped[str] = mapped_column(String(10))
    sentiment: Mapped[str] = mapped_column(String(20), default="neutral")
    language: Mapped[str] = mapped_column(String(16), default="und")
    summary: Mapped[str] = mapped_column(Text, default="")
    needs_reply: Mapped[bool] = mapped_column(default=True)
    suggested_state: Mapped[str | None] = mapped_column(String(20))
    confidence: Mapped[float] = mapped_column(default=0.0)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    routing: Mapped[str | None] = mapped_column(Text)  # what the policy did with it, and why
    provider: Mapped[str] = mapped_column(String(50), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Draft(Base):
    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    author: Mapped[str] = mapped_column(String(100))
    # What a model proposal rests on, and why an operator must look closely (injection cues,
    # hidden text): shown with the draft, never acted on automatically.
    citations: Mapped[list[str]] = mapped_column(JSONType, default=list)
    needs_info: Mapped[list[str]] = mapped_column(JSONType, default=list)
    review_flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    language: Mapped[str | None] = mapped_column(String(16))
    instruction: Mapped[str | None] = mapped_column(Text)
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Review and approval (issue 5): who last edited, who approved which exact text (by hash)
    # against which state of the ticket, and how much the operator changed the proposal.
    proposed_body: Mapped[str | None] = mapped_column(Text)
    last_editor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None]
    approved_hash: Mapped[str | None] = mapped_column(String(64))
    approved_state: Mapped[str | None] = mapped_column(String(20))
    approved_last_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    edit_distance: Mapped[float | None]
    sent_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DraftVersion(Base):
    """Every text a draft has had, with its author: the model's proposal is version 1."""

    __tablename__ = "draft_versions"
    __table_args__ = (UniqueConstraint("draft_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"), index=True)
    version: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
