"""What must hold after any number of crashes, checked against the database and the Gmail
test server's own record of what it holds and what it was asked to send.

Each check returns human-readable violations (empty: it holds), so a campaign can report every
broken invariant of every trial rather than stop at the first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import (
    ActivityEntry,
    Draft,
    Message,
    OutboxEntry,
    QuarantinedMessage,
    Ticket,
)
from communication_agent.models.enums import DraftStatus
from tests.gmail_server import GmailTestServer, StoredMessage


@dataclass
class Expectation:
    """What the trial put in and asked for."""

    mailbox_id: int
    conversations: list[list[str]] = field(default_factory=list)  # Gmail ids, one ticket each
    unparseable: set[str] = field(default_factory=set)  # Gmail ids that must be quarantined
    approved_drafts: dict[int, int] = field(default_factory=dict)  # draft id -> conversation


def bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>")


async def check(session: AsyncSession, gmail: GmailTestServer, expected: Expectation) -> list[str]:
    held = gmail.state.snapshot()
    return [
        *await messages_kept_once(session, held, expected),
        *await tickets_have_messages(session),
        *await conversations_stay_together(session, expected),
        *await replies_sent_once(session, held, expected),
        *await activity_matches_tickets(session),
    ]


async def messages_kept_once(
    session: AsyncSession, held: list[StoredMessage], expected: Expectation
) -> list[str]:
    """Every message Gmail holds is stored once, on a ticket or in quarantine; nothing else."""
    mailbox = expected.mailbox_id
    stored = Counter(
        await session.scalars(
            select(Message.provider_message_id).where(Message.mailbox_id == mailbox)
        )
    )
    quarantined = Counter(
        await session.scalars(
            select(QuarantinedMessage.provider_message_id).where(
                QuarantinedMessage.mailbox_id == mailbox
            )
        )
    )
    headers = Counter(
        await session.scalars(
            select(Message.message_id_header).where(
                Message.mailbox_id == mailbox, Message.message_id_header.is_not(None)
            )
        )
    )
    problems = []
    for message in held:
        copies = stored[message.id] + quarantined[message.id]
        if copies == 0:
            problems.append(f"lost: Gmail message {message.id} ({message.labels}) is not stored")
        elif copies > 1:
            problems.append(f"duplicated: Gmail message {message.id} is stored {copies} times")
        if message.id in expected.unparseable and not quarantined[message.id]:
            problems.append(f"unparseable Gmail message {message.id} is not in quarantine")
    known = {m.id for m in held}
    problems += [
        f"stored but not in Gmail: provider id {pid!r}"
        for pid in {*stored, *quarantined}
        if pid not in known
    ]
    problems += [
        f"duplicated: Message-ID {h} stored {n} times" for h, n in headers.items() if n > 1
    ]
    return problems


async def tickets_have_messages(session: AsyncSession) -> list[str]:
    empty = await session.scalars(
        select(Ticket.id).where(~exists().where(Message.ticket_id == Ticket.id))
    )
    return [f"ticket {t} has no messages" for t in empty]


async def conversations_stay_together(session: AsyncSession, expected: Expectation) -> list[str]:
    """Each conversation on one ticket of its own, our reply included."""
    rows = (
        await session.execute(
            select(Message.provider_message_id, Message.ticket_id).where(
                Message.mailbox_id == expected.mailbox_id
            )
        )
    ).all()
    ticket_of = dict(rows)
    problems = []
    owners: dict[int, int] = {}
    for number, ids in enumerate(expected.conversations):
        tickets = {ticket_of[i] for i in ids if i in ticket_of}
        if len(tickets) > 1:
            problems.append(f"conversation {number} is split over tickets {sorted(tickets)}")
        for ticket in tickets:
            if owners.setdefault(ticket, number) != number:
                problems.append(
                    f"ticket {ticket} mixes conversations {owners[ticket]} and {number}"
                )
    replies = (
        await session.execute(
            select(Draft.id, Draft.ticket_id, Message.ticket_id)
            .join(OutboxEntry, OutboxEntry.draft_id == Draft.id)
            .join(Message, Message.message_id_header == OutboxEntry.message_id_header)
        )
    ).all()
    problems += [
        f"the reply of draft {d} is on ticket {on}, not its ticket {t}"
        for d, t, on in replies
        if t != on
    ]
    return problems


async def replies_sent_once(
    session: AsyncSession, held: list[StoredMessage], expected: Expectation
) -> list[str]:
    """Gmail received each approved reply exactly once, and we know it was sent."""
    sent = Counter(bare(_header(m.raw, b"Message-ID")) for m in held if "SENT" in m.labels)
    problems = [f"sent {n} times: reply {mid}" for mid, n in sent.items() if n > 1]
    entries = (
        await session.execute(
            select(OutboxEntry.draft_id, OutboxEntry.status, OutboxEntry.message_id_header)
        )
    ).all()
    by_draft = {draft: (status, bare(header)) for draft, status, header in entries}
    for draft_id in expected.approved_drafts:
        status, header = by_draft.get(draft_id, ("missing", ""))
        draft = await session.get_one(Draft, draft_id)
        if status != "sent" or draft.status != DraftStatus.SENT.value:
            problems.append(f"draft {draft_id} not sent: draft {draft.status}, outbox {status}")
        if header and not sent[header]:
            problems.append(f"draft {draft_id}: its reply {header} never reached Gmail")
    ours = {header for _status, header in by_draft.values()}
    problems += [
        f"Gmail sent {mid}, which no approval asked for" for mid in sent if mid not in ours
    ]
    return problems


async def activity_matches_tickets(session: AsyncSession) -> list[str]:
    """A ticket's state is the `to` of its latest `ticket.state_changed`, or the state it was
    created in; one `ticket.created` each; one `reply.sent` per sent draft."""
    entries = (
        await session.execute(
            select(ActivityEntry.ticket_id, ActivityEntry.action, ActivityEntry.details)
            .where(
                ActivityEntry.action.in_(("ticket.created", "ticket.state_changed", "reply.sent"))
            )
            .order_by(ActivityEntry.id)
        )
    ).all()
    created: Counter[int | None] = Counter()
    state_from_log: dict[int | None, str] = {}
    replies: Counter[int] = Counter()
    for ticket_id, action, details in entries:
        if action == "ticket.created":
            created[ticket_id] += 1
            state_from_log.setdefault(ticket_id, str(details.get("state")))
        elif action == "ticket.state_changed":
            state_from_log[ticket_id] = str(details.get("to"))
        else:
            replies[int(details["draft_id"])] += 1
    problems = []
    for ticket_id, state in (await session.execute(select(Ticket.id, Ticket.state))).all():
        if created[ticket_id] != 1:
            problems.append(f"ticket {ticket_id} has {created[ticket_id]} ticket.created entries")
        if state_from_log.get(ticket_id) != state:
            logged = state_from_log.get(ticket_id)
            problems.append(f"ticket {ticket_id} is {state} but its log says {logged}")
    sent_drafts = set(
        await session.scalars(select(Draft.id).where(Draft.status == DraftStatus.SENT.value))
    )
    problems += [
        f"draft {d} has {replies[d]} reply.sent entries"
        for d in sent_drafts | set(replies)
        if replies[d] != (1 if d in sent_drafts else 0)
    ]
    orphans = await session.scalar(
        select(func.count())
        .select_from(ActivityEntry)
        .where(ActivityEntry.action == "ticket.created", ActivityEntry.ticket_id.is_(None))
    )
    if orphans:
        problems.append(f"{orphans} ticket.created entries name no ticket")
    return problems


def _header(raw: bytes, name: bytes) -> str:
    for line in raw.split(b"\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip().decode("latin-1")
    return ""
