"""The sender: approved replies leave exactly once, in the customer's thread.

Outbox entries are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single
writer on SQLite), so several processes never take the same entry, and a dead sender's entry is
taken again once its lease ends. Before sending, the entry is checked against its approval:

- the draft's text must hash to what was approved (enforced here, not in any UI);
- the ticket must still be in the state it was approved in, with no newer customer message;
  otherwise the send is *held*: the draft goes back to `edited` with the reason and needs a new
  approval.

An entry tried before may have been accepted by the provider just before a crash: the retry
first asks the provider for the reply's Message-ID (fixed by the entry) and records what it
finds instead of sending again. Transient failures retry with backoff; permanent ones (refused
recipient, revoked access) mark the draft `failed` with the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.mail_provider import (
    MessageRef,
    ProviderError,
    ProviderOpener,
    ProviderUnavailableError,
)
from communication_agent.core import metrics
from communication_agent.core.db import begin_write
from communication_agent.core.logging import get_logger
from communication_agent.models import (
    Contact,
    Draft,
    Mailbox,
    Message,
    MessageSource,
    OutboxEntry,
    Ticket,
)
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, DraftStatus, TicketState
from communication_agent.services import activity, compose, drafts, webhook_events, work_queue
from communication_agent.services.actors import Actor
from communication_agent.services.background import run_rounds
from communication_agent.services.state_machine import allowed_targets
from communication_agent.services.tickets import apply_transition

log = get_logger(__name__)
SENDER = Actor.system("sender")
MAX_ATTEMPTS = 8
SEND_BATCH = 50  # entries a round; a full round is followed at once (see run_rounds)
FIRST_RETRY = timedelta(seconds=15)
MAX_RETRY = timedelta(minutes=30)
SessionMaker = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Claimed:
    id: int
    draft_id: int
    attempts: int
    owner: str
    ticket_id: int | None = None  # for the log lines about it


@dataclass(frozen=True)
class Outgoing:
    """Everything needed to send, read before any network call."""

    mailbox: Mailbox
    raw: bytes
    message_id: str
    thread_id: str | None
    subject: str
    to_address: str
    body: str


async def claim(sessionmaker: SessionMaker, owner: str, lease: timedelta) -> Claimed | None:
    def due(now: datetime) -> ColumnElement[bool]:
        return or_(
            (OutboxEntry.status == "pending") & (OutboxEntry.send_after <= now),
            (OutboxEntry.status == "sending") & (OutboxEntry.lease_expires_at < now),
        )

    async def claimed(_session: AsyncSession, entry: OutboxEntry) -> Claimed:
        return Claimed(entry.id, entry.draft_id, entry.attempts, owner, entry.ticket_id)

    return await work_queue.claim_oldest(
        sessionmaker, OutboxEntry, due, running="sending", owner=owner, lease=lease, claimed=claimed
    )


async def process(
    sessionmaker: SessionMaker,
    opener: ProviderOpener,
    entry: Claimed,
    *,
    state_after_send: TicketState,
) -> str:
    """Look (on a retry), check, send, record. Returns the entry's outcome."""
    async with sessionmaker() as session:
        await begin_write(session)
        outgoing = await _prepare(session, entry)
        await session.commit()
    try:
        provider = await opener(outgoing.mailbox)
    except ProviderError as exc:  # no usable credentials: nothing to wait for
        return await _fail(sessionmaker, entry, str(exc))
    try:
        # An earlier attempt may have been accepted just before we lost track of it: that is
        # decided first, before any staleness check, or a sent reply would be held and later
        # approved and sent a second time.
        found = await provider.find_sent(outgoing.message_id) if entry.attempts > 1 else None
        if found is not None:
            ref, was_found = found, True
        else:
            async with sessionmaker() as session:
                await begin_write(session)
                problem = await _hold_if_stale(session, entry)
                await session.commit()
            if problem is not None:
                return problem
            ref, was_found = await provider.send(outgoing.raw, outgoing.thread_id), False
    except ProviderUnavailableError as exc:
        return await _retry_later(sessionmaker, entry, str(exc), retry_after=exc.retry_after)
    except ProviderError as exc:
        return await _fail(sessionmaker, entry, str(exc))
    finally:
        await provider.aclose()
    await _record(
        sessionmaker, entry, outgoing, ref, found=was_found, state_after_send=state_after_send
    )
    return "sent"


async def _hold_if_stale(session: AsyncSession, entry: Claimed) -> str | None:
    draft = await drafts.load(session, entry.draft_id, for_update=True)
    ticket = await session.get_one(Ticket, draft.ticket_id, populate_existing=True)
    reason = None
    if draft.status not in (DraftStatus.APPROVED.value, DraftStatus.SENDING.value):
        reason = f"the draft is {draft.status}, no longer approved"
    elif draft.approved_hash != drafts.text_hash(draft.body):
        reason = "the text differs from the approved text"
    elif await drafts.newest_customer_message(session, ticket.id) != draft.approved_last_message_id:
        reason = "a new customer message arrived after the approval"
    elif ticket.state != draft.approved_state:
        reason = (
            f"the ticket moved from {draft.approved_state} to {ticket.state} after the approval"
        )
    if reason is None:
        draft.status = DraftStatus.SENDING.value
        return None
    if not await _close_entry(session, entry, "held", reason):
        return "lost"
    if draft.status in (DraftStatus.APPROVED.value, DraftStatus.SENDING.value):
        drafts.withdraw_approval(draft, f"held: {reason}; approve it again")
    activity.record(
        session,
        SENDER,
        "reply.held",
        ticket_id=ticket.id,
        details={"draft_id": draft.id, "reason": reason},
    )
    return "held"


async def _prepare(session: AsyncSession, entry: Claimed) -> Outgoing:
    draft = await session.get_one(Draft, entry.draft_id)
    ticket = await session.get_one(Ticket, draft.ticket_id)
    mailbox = await session.get_one(Mailbox, ticket.mailbox_id)
    contact = await session.get_one(Contact, ticket.contact_id)
    answered = await session.scalar(  # the customer's newest words, not a bounce
        select(Message)
        .where(
            Message.ticket_id == ticket.id,
            Message.direction == Direction.INBOUND.value,
            Message.is_automated.is_(False),
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    stored = await session.get_one(OutboxEntry, entry.id, populate_existing=True)
    if stored.message_id_header is None:  # fixed before the first attempt, kept for retries
        stored.message_id_header = compose.message_id_for(entry.id, mailbox.address)
    message_id = stored.message_id_header
    references = (answered.references or "").split() if answered else []
    to_address = (answered.from_address if answered else "") or contact.email
    raw = compose.reply_message(
        from_address=mailbox.address,
        from_name=mailbox.name,
        to_address=to_address,
        to_name=contact.name,
        subject=ticket.subject,
        body=draft.body,
        message_id=message_id,
        in_reply_to=answered.message_id_header if answered else None,
        references=references,
    )
    return Outgoing(
        mailbox=mailbox,
        raw=raw,
        message_id=message_id,
        thread_id=answered.provider_thread_id if answered else None,
        subject=compose.reply_subject(ticket.subject),
        to_address=to_address,
        body=draft.body,
    )


async def _record(
    sessionmaker: SessionMaker,
    entry: Claimed,
    outgoing: Outgoing,
    ref: MessageRef,
    *,
    found: bool,
    state_after_send: TicketState,
) -> None:
    now = utcnow()
    async with sessionmaker() as session:
        await begin_write(session)
        draft = await drafts.load(session, entry.draft_id, for_update=True)
        ticket = await session.get_one(Ticket, draft.ticket_id, populate_existing=True)
        known = await session.scalar(
            select(Message.id).where(
                Message.mailbox_id == outgoing.mailbox.id,
                Message.direction == Direction.OUTBOUND.value,
                or_(
                    Message.message_id_header == outgoing.message_id,
                    Message.provider_message_id == ref.provider_message_id,
                ),
            )
        )
        if known is None:  # a sync may have brought it in first
            message = Message(
                ticket_id=ticket.id,
                mailbox_id=outgoing.mailbox.id,
                direction=Direction.OUTBOUND.value,
                provider_message_id=ref.provider_message_id,
                provider_thread_id=ref.thread_id or outgoing.thread_id,
                message_id_header=outgoing.message_id,
                from_address=outgoing.mailbox.address,
                from_name=outgoing.mailbox.name,
                to_addresses=[outgoing.to_address],
                subject=outgoing.subject,
                sent_at=now,
                received_at=now,
                body_text=outgoing.body,
                new_content_text=outgoing.body,
            )
            message.source = MessageSource(raw=outgoing.raw)
            session.add(message)
        if draft.status == DraftStatus.SENT.value:  # recorded already (a lease taken over)
            await session.commit()
            return
        draft.status = DraftStatus.SENT.value
        draft.sent_at = now
        draft.status_reason = "found in the mailbox after a retry" if found else None
        await _close_entry(
            session, entry, "sent", None, provider_message_id=ref.provider_message_id
        )
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        current = TicketState(ticket.state)
        if state_after_send is not current and state_after_send in allowed_targets(current):
            apply_transition(session, SENDER, ticket, state_after_send, "reply sent")
        activity.record(
            session,
            SENDER,
            "reply.sent",
            ticket_id=ticket.id,
            details={
                "draft_id": draft.id,
                "approved_by": draft.approved_by_id,
                "message_id_header": outgoing.message_id,
                "provider_message_id": ref.provider_message_id,
                "found_after_retry": found,
            },
        )
        webhook_events.reply_sent(session, ticket, draft, message_id=outgoing.message_id)
        await session.commit()


async def _close_entry(
    session: AsyncSession,
    entry: Claimed,
    status: str,
    error: str | None,
    *,
    provider_message_id: str | None = None,
) -> bool:
    """Close the entry; any outcome but `sent` only while the lease is still ours (a
    successor's outcome stands). Returns whether it was closed."""
    now = utcnow()
    query = update(OutboxEntry).where(OutboxEntry.id == entry.id)
    if status != "sent":
        query = query.where(OutboxEntry.lease_owner == entry.owner)
    closed = await session.execute(
        query.values(
            status=status,
            last_error=error,
            provider_message_id=provider_message_id,
            sent_at=now if status == "sent" else None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    return bool(closed.rowcount)  # type: ignore[attr-defined]


async def _retry_later(
    sessionmaker: SessionMaker, entry: Claimed, error: str, *, retry_after: float | None = None
) -> str:
    if entry.attempts >= MAX_ATTEMPTS:
        return await _fail(sessionmaker, entry, f"gave up after {entry.attempts} attempts: {error}")
    delay: timedelta = min(FIRST_RETRY * 2 ** (entry.attempts - 1), MAX_RETRY)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=min(retry_after, MAX_RETRY.total_seconds())))
    async with sessionmaker() as session:
        await begin_write(session)
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == entry.id, OutboxEntry.lease_owner == entry.owner)
            .values(
                status="pending",
                last_error=error,
                send_after=utcnow() + delay,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=utcnow(),
            )
        )
        await session.commit()
    log.warning("send_retry", outbox_id=entry.id, attempts=entry.attempts)
    return "retry"


async def _fail(sessionmaker: SessionMaker, entry: Claimed, error: str) -> str:
    async with sessionmaker() as session:
        await begin_write(session)
        draft = await drafts.load(session, entry.draft_id, for_update=True)
        if not await _close_entry(session, entry, "failed", error[:2000]):
            await session.commit()  # a successor holds the entry now: its outcome stands
            return "lost"
        draft.status = DraftStatus.FAILED.value
        draft.status_reason = error[:2000]
        draft.version += 1
        activity.record(
            session,
            SENDER,
            "reply.failed",
            ticket_id=draft.ticket_id,
            details={"draft_id": draft.id, "reason": error[:500]},
        )
        await session.commit()
    return "failed"


async def run_due(
    sessionmaker: SessionMaker,
    opener: ProviderOpener,
    *,
    owner: str,
    lease: timedelta,
    state_after_send: TicketState,
    limit: int = SEND_BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    processed = 0
    while processed < limit and not (stop and stop.is_set()):
        entry = await claim(sessionmaker, owner, lease)
        if entry is None:
            break
        await _send_one(sessionmaker, opener, entry, state_after_send=state_after_send)
        processed += 1
    return processed


async def _send_one(
    sessionmaker: SessionMaker,
    opener: ProviderOpener,
    entry: Claimed,
    *,
    state_after_send: TicketState,
) -> None:
    """`process` one claimed entry, its ticket id on every log line, and count the outcome."""
    with structlog.contextvars.bound_contextvars(ticket_id=entry.ticket_id, outbox_id=entry.id):
        try:
            outcome = await process(sessionmaker, opener, entry, state_after_send=state_after_send)
        except Exception as exc:  # recorded on the entry; the sender goes on
            log.exception("send_crashed")
            await _retry_later(sessionmaker, entry, f"unexpected error ({type(exc).__name__})")
            outcome = "error"
        metrics.SENDS.labels(outcome).inc()
        log.info("send_processed", outcome=outcome, attempts=entry.attempts)


async def run_loop(
    sessionmaker: SessionMaker,
    opener: ProviderOpener,
    *,
    owner: str,
    interval: float,
    lease: timedelta,
    state_after_send: TicketState,
    stop: asyncio.Event,
) -> None:
    """Rounds of `run_due` until `stop` is set (see `background.run_rounds`)."""

    async def one_round() -> int:
        return await run_due(
            sessionmaker,
            opener,
            owner=owner,
            lease=lease,
            state_after_send=state_after_send,
            stop=stop,
        )

    await run_rounds(
        "sender", one_round, owner=owner, interval=interval, stop=stop, full_round=SEND_BATCH
    )
