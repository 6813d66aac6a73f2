"""Storing fetched mail: every message on exactly one ticket, once.

`ingest_message` runs inside the caller's write transaction, one SAVEPOINT per message, so a
batch commits together (the sync advances its checkpoint in the same commit) while one bad
message never spoils the others. Duplicates are found by the provider's id and by Message-ID,
per mailbox; the unique constraints on `messages` are the backstop if two writers ever race.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import (
    Attachment,
    Mailbox,
    Message,
    MessageSource,
    QuarantinedMessage,
    Ticket,
)
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, TicketState
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.contacts import find_or_create_contact
from communication_agent.services.mail_parsing import (
    ParsedMessage,
    UnparseableMessageError,
    parse_message,
)
from communication_agent.services.threading import find_ticket
from communication_agent.services.tickets import apply_transition

SYNC_ACTOR = Actor.system("sync")
REOPENED_BY_CUSTOMER = "customer replied"
ANSWERED_ELSEWHERE = "reply sent from the mailbox outside Communication Agent"


@dataclass(frozen=True)
class IncomingMessage:
    """One message as a provider hands it over."""

    raw: bytes
    provider_message_id: str | None = None
    provider_thread_id: str | None = None
    received_at: datetime | None = None
    sent_by_mailbox: bool = False  # the provider says so (Gmail's SENT label, a sent/ folder)


class Outcome(StrEnum):
    NEW_TICKET = "new_ticket"
    THREADED = "threaded"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"  # our own outgoing mail that belongs to no ticket


@dataclass
class SyncCounts:
    """The figures a sync or import reports (the JSON keys of the sync API)."""

    fetched: int = 0
    new_messages: int = 0
    new_tickets: int = 0
    threaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    errors: int = 0
    ignored: int = 0
    error_details: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if outcome in (Outcome.NEW_TICKET, Outcome.THREADED):
            self.new_messages += 1
        if outcome is Outcome.NEW_TICKET:
            self.new_tickets += 1
        elif outcome is Outcome.THREADED:
            self.threaded += 1
        elif outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        elif outcome is Outcome.QUARANTINED:
            self.quarantined += 1
        elif outcome is Outcome.IGNORED:
            self.ignored += 1

    def merge(self, other: SyncCounts) -> None:
        for key in self.as_dict():
            setattr(self, key, getattr(self, key) + getattr(other, key))

    def as_dict(self) -> dict[str, int]:
        keys = ("fetched", "new_messages", "new_tickets", "threaded", "duplicates")
        return {k: getattr(self, k) for k in (*keys, "quarantined", "errors", "ignored")}


async def ingest_message(
    session: AsyncSession, mailbox: Mailbox, incoming: IncomingMessage, *, batch: bool = False
) -> Outcome:
    """Store one message (see the module docstring); the caller commits.

    `batch=True` is the sync's fast path: the caller holds the mailbox's lease (no other writer)
    and has already skipped known provider ids, so there is no SAVEPOINT and no re-check; an
    IntegrityError propagates and the caller replays its batch with `batch=False`.
    """
    if (
        not batch
        and incoming.provider_message_id
        and await _known_provider_id(session, mailbox.id, incoming)
    ):
        return Outcome.DUPLICATE
    try:
        parsed = parse_message(incoming.raw)
    except UnparseableMessageError as exc:
        return await _quarantine(session, mailbox, incoming, str(exc), batch=batch)
    if parsed.message_id and await _known_message_id(session, mailbox.id, parsed.message_id):
        return Outcome.DUPLICATE
    if batch:
        return await _store(session, mailbox, incoming, parsed)
    try:
        async with session.begin_nested():
            return await _store(session, mailbox, incoming, parsed)
    except IntegrityError:  # another writer stored it between our check and our insert
        return Outcome.DUPLICATE


async def _known_provider_id(
    session: AsyncSession, mailbox_id: int, incoming: IncomingMessage
) -> bool:
    pid = incoming.provider_message_id
    in_messages = exists().where(
        Message.mailbox_id == mailbox_id, Message.provider_message_id == pid
    )
    in_quarantine = exists().where(
        QuarantinedMessage.mailbox_id == mailbox_id, QuarantinedMessage.provider_message_id == pid
    )
    return bool(await session.scalar(select(in_messages | in_quarantine)))


async def _known_message_id(session: AsyncSession, mailbox_id: int, message_id: str) -> bool:
    query = exists().where(
        Message.mailbox_id == mailbox_id, Message.message_id_header == message_id
    )
    return bool(await session.scalar(select(query)))


async def _quarantine(
    session: AsyncSession, mailbox: Mailbox, incoming: IncomingMessage, reason: str, *, batch: bool
) -> Outcome:
    row = QuarantinedMessage(
        mailbox_id=mailbox.id,
        provider_message_id=incoming.provider_message_id,
        reason=reason,
        raw=incoming.raw,
    )
    if batch:
        session.add(row)
    else:
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            return Outcome.DUPLICATE
    activity.record(
        session,
        SYNC_ACTOR,
        "message.quarantined",
        details={
            "mailbox_id": mailbox.id,
            "provider_message_id": incoming.provider_message_id,
            "reason": reason,
        },
    )
    return Outcome.QUARANTINED


async def _store(
    session: AsyncSession, mailbox: Mailbox, incoming: IncomingMessage, parsed: ParsedMessage
) -> Outcome:
    outbound = incoming.sent_by_mailbox or parsed.from_address == mailbox.address.lower()
    ticket = await find_ticket(session, mailbox.id, parsed, incoming.provider_thread_id)
    if outbound and ticket is None:
        return Outcome.IGNORED
    outcome = Outcome.THREADED
    if ticket is None:
        ticket = await _open_ticket(session, mailbox, parsed, incoming)
        outcome = Outcome.NEW_TICKET
    message = _message_row(mailbox, ticket, incoming, parsed, outbound)
    session.add(message)
    await session.flush()
    session.add(MessageSource(message_id=message.id, raw=incoming.raw))
    for attachment in parsed.attachments:
        session.add(
            Attachment(
                message_id=message.id,
                filename=attachment.filename,
                content_type=attachment.content_type[:255],
                size=attachment.size,
                content_id=attachment.content_id,
                part_index=attachment.part_index,
            )
        )
    if outcome is Outcome.THREADED:  # a new ticket's message is logged by `ticket.created`
        activity.record(
            session,
            SYNC_ACTOR,
            "message.received" if not outbound else "message.sent_elsewhere",
            ticket_id=ticket.id,
            details={
                "message_id": message.id,
                "direction": message.direction,
                "automated": parsed.automated_reason,
            },
        )
        _update_ticket(session, ticket, parsed, message, outbound)
    await session.flush()
    return outcome


async def _open_ticket(
    session: AsyncSession, mailbox: Mailbox, parsed: ParsedMessage, incoming: IncomingMessage
) -> Ticket:
    """A new conversation. Automated mail (newsletters, bounces) is filed straight to DONE: kept
    and searchable, but never on the operators' to-do list and never answered."""
    contact = await find_or_create_contact(session, parsed.from_address, parsed.from_name)
    when = parsed.date or incoming.received_at or utcnow()
    state = TicketState.DONE if parsed.is_automated else TicketState.NEW
    ticket = Ticket(
        mailbox_id=mailbox.id,
        contact_id=contact.id,
        subject=parsed.subject,
        state=state.value,
        created_at=when,
        updated_at=when,
        state_changed_at=when,
        last_customer_message_at=when,
        resolved_at=when if parsed.is_automated else None,
    )
    session.add(ticket)
    await session.flush()
    activity.record(
        session,
        SYNC_ACTOR,
        "ticket.created",
        ticket_id=ticket.id,
        details={
            "mailbox_id": mailbox.id,
            "state": state.value,
            "automated": parsed.automated_reason,
        },
    )
    return ticket


def _message_row(
    mailbox: Mailbox,
    ticket: Ticket,
    incoming: IncomingMessage,
    parsed: ParsedMessage,
    outbound: bool,
) -> Message:
    return Message(
        ticket_id=ticket.id,
        mailbox_id=mailbox.id,
        direction=(Direction.OUTBOUND if outbound else Direction.INBOUND).value,
        provider_message_id=incoming.provider_message_id,
        provider_thread_id=incoming.provider_thread_id,
        message_id_header=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=" ".join(parsed.references) or None,
        from_address=parsed.from_address,
        from_name=parsed.from_name,
        to_addresses=parsed.to_addresses,
        cc_addresses=parsed.cc_addresses,
        subject=parsed.subject,
        sent_at=parsed.date,
        received_at=incoming.received_at or utcnow(),
        body_text=parsed.body_text,
        body_html=parsed.body_html,
        new_content_text=parsed.new_content_text,
        is_automated=parsed.is_automated,
        flags={"automated_reason": parsed.automated_reason} if parsed.is_automated else {},
    )


def _update_ticket(
    session: AsyncSession, ticket: Ticket, parsed: ParsedMessage, message: Message, outbound: bool
) -> None:
    """A customer's reply reopens the ticket; a reply sent from the mailbox elsewhere counts like
    one sent from here. Automated mail changes nothing, so autoresponders cannot loop."""
    when = parsed.date or message.received_at
    state = TicketState(ticket.state)
    if outbound:
        if ticket.first_response_at is None:
            ticket.first_response_at = when
        if state in (TicketState.NEW, TicketState.NEEDS_ACTION):
            apply_transition(
                session, SYNC_ACTOR, ticket, TicketState.WAITING_OTHERS, ANSWERED_ELSEWHERE
            )
        return
    if parsed.is_automated:
        return
    if ticket.last_customer_message_at is None or when > ticket.last_customer_message_at:
        ticket.last_customer_message_at = when
    ticket.updated_at = utcnow()
    if state in (TicketState.WAITING_OTHERS, TicketState.DONE):
        apply_transition(
            session, SYNC_ACTOR, ticket, TicketState.NEEDS_ACTION, REOPENED_BY_CUSTOMER
        )
