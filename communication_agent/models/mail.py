"""Mailboxes we read, the customers who write to them, and every message in either direction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from communication_agent.models.base import Base, JSONType, trigram_index, utcnow

if TYPE_CHECKING:
    from communication_agent.models.tickets import Ticket


class Mailbox(Base):
    """A mailbox we read and send from, with its sync health.

    `credentials` is encrypted (Fernet, keyed from the secret key) and never leaves the service
    layer. `lease_owner`/`lease_expires_at` ensure one sync at a time per mailbox across processes.
    """

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    address: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(20))
    is_active: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_state: Mapped[str] = mapped_column(String(20), default="none")
    token_error: Mapped[str | None] = mapped_column(Text)
    sync_checkpoint: Mapped[str | None] = mapped_column(String(100))
    last_sync_started_at: Mapped[datetime | None]
    last_sync_succeeded_at: Mapped[datetime | None]
    consecutive_errors: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Contact(Base):
    """A customer, identified by email address (stored lower-cased)."""

    __tablename__ = "contacts"
    __table_args__ = (trigram_index("ix_contacts_search_trgm", "email", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    """One email, inbound or outbound, on exactly one ticket.

    Deduplication is enforced by the database, per mailbox: the provider's message id and the
    RFC 5322 Message-ID are each unique within a mailbox (NULLs are allowed and never collide).
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "provider_message_id"),
        UniqueConstraint("mailbox_id", "message_id_header"),
        Index("ix_messages_ticket_id_sent_at", "ticket_id", "sent_at"),
        Index("ix_messages_mailbox_id_provider_thread_id", "mailbox_id", "provider_thread_id"),
        trigram_index("ix_messages_search_trgm", "body_text", "subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    direction: Mapped[str] = mapped_column(String(10))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    provider_thread_id: Mapped[str | None] = mapped_column(String(255))
    message_id_header: Mapped[str | None] = mapped_column(String(998))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addresses: Mapped[list[str]] = mapped_column(JSONType, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSONType, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    new_content_text: Mapped[str] = mapped_column(Text, default="")
    is_automated: Mapped[bool] = mapped_column(default=False)
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # For writing a batch in one flush (rows linked before they have ids); never lazy-loaded.
    ticket: Mapped[Ticket] = relationship(lazy="raise")
    source: Mapped[MessageSource | None] = relationship(lazy="raise")
    attachments: Mapped[list[Attachment]] = relationship(lazy="raise")


class MessageSource(Base):
    """The exact bytes we received, kept apart so listing messages never loads them."""

    __tablename__ = "message_sources"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    """Attachment metadata; the content stays in the raw source and is extracted on demand."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    content_id: Mapped[str | None] = mapped_column(String(998))
    part_index: Mapped[int]


class QuarantinedMessage(Base):
    """Mail we could not parse: kept whole, with the reason, for an operator to look at."""

    __tablename__ = "quarantined_messages"
    __table_args__ = (UniqueConstraint("mailbox_id", "provider_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncError(Base):
    """A message the provider would not give us; retried on every sync until it succeeds."""

    __tablename__ = "sync_errors"
    __table_args__ = (UniqueConstraint("mailbox_id", "provider_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    provider_message_id: Mapped[str] = mapped_column(String(255))
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=1)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
