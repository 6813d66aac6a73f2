"""Storing fetched mail: every message on exactly one ticket, once.

Work is done a batch at a time (a sync page; a single message is a batch of one). Everything the
threading rules need is looked up in a few queries per batch (known Message-IDs, threads,
referenced messages, subject tokens, contacts); the batch is then resolved in memory, where a
reply also finds a message from earlier in the same batch, and written in one flush, which
inserts each table's rows together. That is what makes a large import fast.

Duplicates are found by the provider's id and by Message-ID, per mailbox; the unique constraints
on `messages` are the backstop. `ingest_batch(..., isolated=False)` is the sync's fast path: the
caller holds the mailbox's lease and has skipped known provider ids; an IntegrityError then
propagates and the caller replays the batch one message at a time, each in its own SAVEPOINT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import assign_sqlite_ids
from communication_agent.models import (
    Attachment,
    Contact,
    Draft,
    Mailbox,
    Message,
    MessageSource,
    OutboxEntry,
    QuarantinedMessage,
    ReasoningTask,
    Ticket,
)
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, DraftStatus, TicketState
from communication_agent.models.enums import MailProvider as MailProviderKind
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.mail_parsing import (
    ParsedMessage,
    UnparseableMessageError,
    parse_message,
)
from communication_agent.services.threading import TICKET_REFERENCE
from communication_agent.services.tickets import apply_transition

SYNC_ACTOR = Actor.system("sync")
REOPENED_BY_CUSTOMER = "customer replied"
ANSWERED_ELSEWHERE = "reply sent from the mailbox outside Communication Agent"
NEWER_MESSAGE = "a newer customer message arrived"


@dataclass(frozen=True)
class IncomingMessage:
    """One message as a provider hands it over (`parsed` when it was parsed elsewhere: a string
    there is the reason it could not be)."""

    raw: bytes
    provider_message_id: str | None = None
    provider_thread_id: str | None = None
    received_at: datetime | None = None
    sent_by_mailbox: bool = False  # the provider says so (Gmail's SENT label, a sent/ folder)
    parsed: ParsedMessage | str | None = None


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


def parse_or_reason(raw: bytes) -> ParsedMessage | str:
    """Parse, or say why not. Whatever the parser throws stays with this one message (it is
    quarantined with the reason): one poisoned email must not stop a mailbox's sync."""
    try:
        return parse_message(raw)
    except UnparseableMessageError as exc:
        return str(exc)
    except Exception as exc:  # a stdlib parser bug on hostile input is still only this message
        return f"the parser failed on this message ({type(exc).__name__}: {str(exc)[:200]})"


async def ingest_message(
    session: AsyncSession, mailbox: Mailbox, incoming: IncomingMessage
) -> Outcome:
    """Store one message safely (its own SAVEPOINT, known ids re-checked); the caller commits."""
    [outcome] = await ingest_batch(session, mailbox, [incoming], isolated=True)
    return outcome


async def ingest_batch(
    session: AsyncSession, mailbox: Mailbox, batch: Sequence[IncomingMessage], *, isolated: bool
) -> list[Outcome]:
    """Store a batch (see the module docstring); the caller commits."""
    if isolated:
        outcomes = []
        for incoming in batch:
            if incoming.provider_message_id and await _known_provider_id(
                session, mailbox.id, incoming
            ):
                outcomes.append(Outcome.DUPLICATE)
                continue
            outcomes.append(await _write_one(session, mailbox, incoming))
        return outcomes
    return await _write(session, mailbox, batch)


async def _write_one(session: AsyncSession, mailbox: Mailbox, incoming: IncomingMessage) -> Outcome:
    """One message in its own SAVEPOINT. A unique violation means a duplicate only if the
    message really is stored now; otherwise another writer won a race on something else (a new
    contact, say), and a second try sees its row. Never a silent drop."""
    for attempt in range(2):
        try:
            async with session.begin_nested():
                [outcome] = await _write(session, mailbox, [incoming])
            return outcome
        except IntegrityError:
            if incoming.provider_message_id and await _known_provider_id(
                session, mailbox.id, incoming
            ):
                return Outcome.DUPLICATE
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


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


async def _write(
    session: AsyncSession, mailbox: Mailbox, batch: Sequence[IncomingMessage]
) -> list[Outcome]:
    parsed = [m.parsed if m.parsed is not None else parse_or_reason(m.raw) for m in batch]
    index = await _BatchIndex.load(
        session, mailbox, batch, [p for p in parsed if not isinstance(p, str)]
    )
    outcomes = []
    log = activity.EntryBatch()
    with session.no_autoflush:
        for incoming, result in zip(batch, parsed, strict=True):
            if isinstance(result, str):
                outcomes.append(_quarantine(session, mailbox, incoming, result, index, log=log))
            else:
                outcomes.append(_store(session, mailbox, incoming, result, index, log=log))
    await assign_sqlite_ids(session)
    await session.flush()
    await log.write(session)
    if index.reasoning:
        await session.execute(
            insert(ReasoningTask),
            [{"ticket_id": t.id, "message_id": m.id} for t, m in index.reasoning],
        )
        # A proposal answers the conversation as it was: a new customer message makes it stale
        # whether or not a new one gets drafted.
        await session.execute(
            update(Draft)
            .where(
                Draft.ticket_id.in_({t.id for t, _m in index.reasoning}),
                Draft.status == DraftStatus.PROPOSED.value,
            )
            .values(status=DraftStatus.SUPERSEDED.value, status_reason=NEWER_MESSAGE)
            .execution_options(synchronize_session=False)
        )
    return outcomes


@dataclass
class _BatchIndex:
    """What the batch knows, so threading needs no query per message."""

    message_ids: dict[str, Ticket | None]  # Message-ID -> its ticket (None: quarantined/ignored)
    threads: dict[str, Ticket]
    tickets: dict[int, Ticket]
    contacts: dict[str, Contact]
    provider_ids: set[str]
    mailbox_address: str = ""
    # Replies our sender is sending: their copies are the sender's to record (see below).
    ours_in_flight: set[str] = field(default_factory=set)
    # Customer messages to triage and draft for, queued with the batch (see reasoning_tasks).
    reasoning: list[tuple[Ticket, Message]] = field(default_factory=list)

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        mailbox: Mailbox,
        batch: Sequence[IncomingMessage],
        parsed: Sequence[ParsedMessage],
    ) -> _BatchIndex:
        mailbox_id = mailbox.id
        own_ids = {p.message_id for p in parsed if p.message_id}
        referenced = {i for p in parsed for i in (p.in_reply_to, *p.references) if i}
        threads = {m.provider_thread_id for m in batch if m.provider_thread_id}
        tokens = {int(t) for p in parsed for t in TICKET_REFERENCE.findall(p.subject)}
        in_mailbox = Message.mailbox_id == mailbox_id
        by_id = (
            dict(
                (
                    await session.execute(
                        select(Message.message_id_header, Message.ticket_id).where(
                            in_mailbox, Message.message_id_header.in_(own_ids | referenced)
                        )
                    )
                ).all()
            )
            if own_ids | referenced
            else {}
        )
        by_thread = (
            dict(
                (
                    await session.execute(
                        select(Message.provider_thread_id, Message.ticket_id).where(
                            in_mailbox, Message.provider_thread_id.in_(threads)
                        )
                    )
                ).all()
            )
            if threads
            else {}
        )
        ticket_ids = set(by_id.values()) | set(by_thread.values()) | tokens
        tickets = (
            {
                t.id: t
                for t in await session.scalars(
                    select(Ticket).where(Ticket.id.in_(ticket_ids), Ticket.mailbox_id == mailbox_id)
                )
            }
            if ticket_ids
            else {}
        )
        senders = {p.from_address for p in parsed}
        contacts = (
            {
                c.email: c
                for c in await session.scalars(select(Contact).where(Contact.email.in_(senders)))
            }
            if senders
            else {}
        )
        in_flight = (
            set(
                await session.scalars(
                    select(OutboxEntry.message_id_header).where(
                        OutboxEntry.message_id_header.in_(own_ids),
                        OutboxEntry.status.in_(("pending", "sending")),
                    )
                )
            )
            if own_ids
            else set()
        )
        return cls(
            mailbox_address=mailbox.address.lower(),
            ours_in_flight={i for i in in_flight if i},
            message_ids={k: tickets.get(v) for k, v in by_id.items() if k},
            threads={k: tickets[v] for k, v in by_thread.items() if k and v in tickets},
            tickets=tickets,
            contacts=contacts,
            provider_ids=set(),
        )

    def find_ticket(self, parsed: ParsedMessage, thread_id: str | None) -> Ticket | None:
        """The threading rules (see `services/threading.py`), answered from the index."""
        if thread_id and thread_id in self.threads:
            return self.threads[thread_id]
        for message_id in [parsed.in_reply_to, *reversed(parsed.references)]:
            ticket = self.message_ids.get(message_id) if message_id else None
            if ticket is not None:
                return ticket
        # A subject token is typed by anyone: it joins only the customer's own ticket (or our
        # own mail), so a stranger cannot reopen a ticket and have the reply sent to them.
        sender = self.contacts.get(parsed.from_address)
        for token in TICKET_REFERENCE.findall(parsed.subject):
            ticket = self.tickets.get(int(token))
            if ticket is not None and (
                parsed.from_address == self.mailbox_address
                or (sender is not None and sender.id == ticket.contact_id)
            ):
                return ticket
        return None

    def remember(self, parsed: ParsedMessage, thread_id: str | None, ticket: Ticket | None) -> None:
        if parsed.message_id:
            self.message_ids[parsed.message_id] = ticket
        if thread_id and ticket is not None:
            self.threads.setdefault(thread_id, ticket)


def _quarantine(
    session: AsyncSession,
    mailbox: Mailbox,
    incoming: IncomingMessage,
    reason: str,
    index: _BatchIndex,
    *,
    log: activity.EntryBatch,
) -> Outcome:
    if incoming.provider_message_id in index.provider_ids:
        return Outcome.DUPLICATE
    if incoming.provider_message_id:
        index.provider_ids.add(incoming.provider_message_id)
    session.add(
        QuarantinedMessage(
            mailbox_id=mailbox.id,
            provider_message_id=incoming.provider_message_id,
            reason=reason,
            raw=incoming.raw,
        )
    )
    log.add(
        SYNC_ACTOR,
        "message.quarantined",
        details={
            "mailbox_id": mailbox.id,
            "provider_message_id": incoming.provider_message_id,
            "reason": reason,
        },
    )
    return Outcome.QUARANTINED


def _store(
    session: AsyncSession,
    mailbox: Mailbox,
    incoming: IncomingMessage,
    parsed: ParsedMessage,
    index: _BatchIndex,
    *,
    log: activity.EntryBatch,
) -> Outcome:
    if (parsed.message_id and parsed.message_id in index.message_ids) or (
        incoming.provider_message_id and incoming.provider_message_id in index.provider_ids
    ):
        return Outcome.DUPLICATE
    if incoming.provider_message_id:
        index.provider_ids.add(incoming.provider_message_id)
    # Gmail labels what the mailbox sent (SENT); a From header naming our address is only
    # trusted where the provider has no such label (imported archives), as anyone can forge it.
    outbound = incoming.sent_by_mailbox or (
        mailbox.provider != MailProviderKind.GMAIL.value
        and parsed.from_address == mailbox.address.lower()
    )
    if outbound and parsed.message_id in index.ours_in_flight:
        # Our own reply, synced back before the sender recorded it (it may be between the
        # provider's acceptance and its commit, or dead there): the sender records it, with
        # its draft and ticket changes; counting it here as "answered elsewhere" would move
        # the ticket and hold the very send it came from.
        return Outcome.IGNORED
    ticket = index.find_ticket(parsed, incoming.provider_thread_id)
    if outbound and ticket is None:
        index.remember(parsed, None, None)
        return Outcome.IGNORED
    outcome = Outcome.THREADED
    if ticket is None:
        ticket = _open_ticket(session, mailbox, parsed, incoming, index, log=log)
        outcome = Outcome.NEW_TICKET
    message = _message_row(mailbox, ticket, incoming, parsed, outbound)
    session.add(message)
    index.remember(parsed, incoming.provider_thread_id, ticket)
    if not outbound and not parsed.is_automated:
        index.reasoning.append((ticket, message))
    if outcome is Outcome.THREADED:  # a new ticket's first message is logged by `ticket.created`
        log.add(
            SYNC_ACTOR,
            "message.received" if not outbound else "message.sent_elsewhere",
            ticket=ticket,
            details=_message_details(parsed, incoming, message.direction),
        )
        _update_ticket(session, ticket, parsed, message, outbound)
    return outcome


def _open_ticket(
    session: AsyncSession,
    mailbox: Mailbox,
    parsed: ParsedMessage,
    incoming: IncomingMessage,
    index: _BatchIndex,
    *,
    log: activity.EntryBatch,
) -> Ticket:
    """A new conversation. Automated mail (newsletters, bounces) is filed straight to DONE: kept
    and searchable, but never on the operators' to-do list and never answered."""
    contact = index.contacts.get(parsed.from_address)
    if contact is None:
        contact = Contact(email=parsed.from_address, name=parsed.from_name)
        session.add(contact)
        index.contacts[parsed.from_address] = contact
    elif parsed.from_name and not contact.name:
        contact.name = parsed.from_name
    when = parsed.date or incoming.received_at or utcnow()
    state = TicketState.DONE if parsed.is_automated else TicketState.NEW
    ticket = Ticket(
        mailbox_id=mailbox.id,
        subject=parsed.subject,
        state=state.value,
        created_at=when,
        updated_at=when,
        state_changed_at=when,
        last_customer_message_at=when,
        resolved_at=when if parsed.is_automated else None,
    )
    ticket.contact = contact
    session.add(ticket)
    log.add(
        SYNC_ACTOR,
        "ticket.created",
        ticket=ticket,
        details={
            "mailbox_id": mailbox.id,
            "state": state.value,
            **_message_details(parsed, incoming, Direction.INBOUND.value),
        },
    )
    return ticket


def _message_details(
    parsed: ParsedMessage, incoming: IncomingMessage, direction: str
) -> dict[str, object]:
    return {
        "message_id_header": parsed.message_id,
        "provider_message_id": incoming.provider_message_id,
        "direction": direction,
        "automated": parsed.automated_reason,
    }


def _message_row(
    mailbox: Mailbox,
    ticket: Ticket,
    incoming: IncomingMessage,
    parsed: ParsedMessage,
    outbound: bool,
) -> Message:
    message = Message(
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
        flags=_flags(parsed),
    )
    message.ticket = ticket
    message.source = MessageSource(raw=incoming.raw)
    message.attachments = list(_attachments(parsed))
    return message


def _flags(parsed: ParsedMessage) -> dict[str, object]:
    flags: dict[str, object] = {}
    if parsed.is_automated:
        flags["automated_reason"] = parsed.automated_reason
    if parsed.hidden_html:
        flags["hidden_html"] = True
    return flags


def _attachments(parsed: ParsedMessage) -> Iterable[Attachment]:
    for attachment in parsed.attachments:
        yield Attachment(
            filename=attachment.filename,
            content_type=attachment.content_type[:255],
            size=attachment.size,
            content_id=attachment.content_id,
            part_index=attachment.part_index,
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
            _transition(session, ticket, TicketState.WAITING_OTHERS, ANSWERED_ELSEWHERE)
        return
    if parsed.is_automated:
        return
    if ticket.last_customer_message_at is None or when > ticket.last_customer_message_at:
        ticket.last_customer_message_at = when
    ticket.updated_at = utcnow()
    if state in (TicketState.WAITING_OTHERS, TicketState.DONE):
        _transition(session, ticket, TicketState.NEEDS_ACTION, REOPENED_BY_CUSTOMER)


def _transition(session: AsyncSession, ticket: Ticket, target: TicketState, reason: str) -> None:
    apply_transition(session, SYNC_ACTOR, ticket, target, reason)
