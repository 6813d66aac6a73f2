"""The world around a worker that keeps being killed: customers writing (threads, replies by
header, automated mail, mail only quarantine can take), an operator answering through the
services (state change, draft, approval), customers writing back once answered, and Gmail
failing now and then. `tests.crash_harness` runs the worker; this is everything else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import (
    Draft,
    Mailbox,
    Message,
    OutboxEntry,
    QuarantinedMessage,
    Ticket,
)
from communication_agent.models.enums import ActorType, DraftStatus, Role, TicketState
from communication_agent.services import drafts, mailboxes, tickets, users
from communication_agent.services.actors import Actor
from communication_agent.services.errors import DomainError
from tests.crash_invariants import Expectation
from tests.gmail_server import Fault, GmailTestServer
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
HARNESS = Actor.system("crash-harness")


@dataclass(frozen=True)
class TrialSize:
    conversations: int = 10  # in the inbox before the first start
    arrivals: int = 3  # new conversations per life
    kills: int = 2
    answered: float = 0.6  # share of customer conversations an operator answers
    follow_ups: float = 0.4  # chance a customer writes back after a reply was sent
    send_faults: bool = False  # 5xx on send: each costs the sender's first backoff (15 s)
    final_seconds: float = 90.0


@dataclass
class _Conversation:
    number: int
    thread_id: str
    sender: str
    subject: str
    answer: bool
    gmail_ids: list[str] = field(default_factory=list)
    last_header: str = ""
    draft_id: int | None = None
    approved: bool = False
    followed_up: bool = False


class SupportWorld:
    """One trial's mailbox, customers and operator; `expected` is what the invariants are
    checked against."""

    def __init__(
        self,
        rng: random.Random,
        gmail: GmailTestServer,
        sessionmaker: SessionMaker,
        size: TrialSize,
    ) -> None:
        self.rng = rng
        self.gmail = gmail
        self.sessionmaker = sessionmaker
        self.size = size
        self.conversations: list[_Conversation] = []
        self.expected = Expectation(mailbox_id=0)
        self.operator: Actor | None = None

    async def prepare(self, secret_key: str) -> None:
        async with self.sessionmaker() as session:
            mailbox = await mailboxes.connect_gmail(
                session,
                HARNESS,
                address=self.gmail.state.address,
                refresh_token=self.gmail.issue_refresh_token(),
                secret_key=secret_key,
            )
            self.expected.mailbox_id = mailbox.id
        async with self.sessionmaker() as session:
            user = await users.create_user(
                session,
                HARNESS,
                email="operator@staff.example.com",
                password="crash harness operator",
                role=Role.OPERATOR,
            )
            self.operator = Actor(
                type=ActorType.USER, name=user.email, user_id=user.id, role=Role.OPERATOR
            )
        for _ in range(self.size.conversations):
            self.arrive()
        self.arm_faults()

    def arrive(self) -> None:
        """A new conversation: usually a customer's (one to three messages), sometimes
        automated mail or something only quarantine can take."""
        number = len(self.conversations)
        kind = self.rng.choices(["customer", "automated", "broken"], weights=[8, 1, 1])[0]
        if kind == "broken":
            stored = self.gmail.add_message(
                b"Subject: no sender at all\r\n\r\nnothing to reply to\r\n",
                thread_id=f"broken-{number}",
            )
            self.expected.unparseable.add(stored.id)
            return
        conversation = _Conversation(
            number=number,
            thread_id=f"thread-{number}",
            sender=f"customer{number}@example.org",
            subject=f"Case {number}",
            answer=kind == "customer" and self.rng.random() < self.size.answered,
        )
        self.conversations.append(conversation)
        self.expected.conversations.append(conversation.gmail_ids)
        headers = {"Auto-Submitted": "auto-replied"} if kind == "automated" else None
        for _ in range(self.rng.randint(1, 3)):
            self._add(conversation, headers=headers)

    def _add(self, conversation: _Conversation, *, headers: dict[str, str] | None = None) -> None:
        n = len(conversation.gmail_ids)
        header = f"<case{conversation.number}.{n}@example.org>"
        previous = conversation.last_header or None
        # Gmail keeps a conversation in one thread; In-Reply-To is there or not.
        raw = raw_email(
            sender=conversation.sender,
            subject=f"Re: {conversation.subject}" if previous else conversation.subject,
            message_id=header,
            in_reply_to=previous if previous and self.rng.random() < 0.7 else None,
            references=[previous] if previous else None,
            headers=headers,
            body=f"Message {n} about case {conversation.number}.",
        )
        stored = self.gmail.add_message(raw, thread_id=conversation.thread_id)
        conversation.gmail_ids.append(stored.id)
        conversation.last_header = header

    def arm_faults(self) -> None:
        """Provider faults the worker must ride out; counted as the Gmail server answers them."""
        menu = [
            Fault("batch", status=503, times=self.rng.randint(1, 2)),
            Fault("messages.get", status=429, retry_after="0", times=self.rng.randint(1, 6)),
            Fault("messages.get", status=500, times=self.rng.randint(1, 3)),
            Fault("history.list", status=500, times=1),
            Fault("history.list", status=429, retry_after="1", times=1),
            Fault("messages.list", status=503, times=1),
            Fault("profile", status=500, times=1),
            Fault("messages.send.accepted", delay=0.3, times=self.rng.randint(1, 4)),
            Fault("batch", delay=0.4, times=2),
        ]
        if self.size.send_faults:
            menu.append(Fault("messages.send", status=503, times=1))
            menu.append(Fault("messages.send.accepted", status=500, times=1))
        for fault in self.rng.sample(menu, k=self.rng.randint(1, 3)):
            self.gmail.inject(fault)

    async def operate(self) -> None:
        """Answer every conversation due an answer once all its mail is on one ticket; let
        some customers write back once their reply is sent."""
        for conversation in self.conversations:
            if conversation.answer and not conversation.approved:
                ticket_id = await self._ticket_holding(conversation)
                if ticket_id is not None:
                    await self._answer(conversation, ticket_id)
            elif conversation.approved and not conversation.followed_up:
                reply = await self._sent_reply(conversation)
                if reply is not None:
                    conversation.followed_up = True
                    if self.rng.random() < self.size.follow_ups:
                        conversation.last_header = reply
                        self._add(conversation)

    async def _ticket_holding(self, conversation: _Conversation) -> int | None:
        async with self.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(Message.ticket_id).where(
                        Message.mailbox_id == self.expected.mailbox_id,
                        Message.provider_message_id.in_(conversation.gmail_ids),
                    )
                )
            ).all()
        if len(rows) != len(conversation.gmail_ids) or len(set(rows)) != 1:
            return None
        return rows[0]

    async def _answer(self, conversation: _Conversation, ticket_id: int) -> None:
        """What an operator does: take the ticket on, write the reply, approve it."""
        actor = self.operator
        assert actor is not None
        try:
            async with self.sessionmaker() as session:
                ticket = await session.get_one(Ticket, ticket_id)
                if ticket.state == TicketState.NEW.value:
                    await tickets.change_state(
                        session,
                        actor,
                        ticket_id,
                        target=TicketState.NEEDS_ACTION,
                        expected_version=ticket.version,
                    )
            if conversation.draft_id is None:
                async with self.sessionmaker() as session:
                    body = f"Thanks, case {conversation.number} is sorted."
                    conversation.draft_id = (
                        await drafts.create(session, actor, ticket_id, body)
                    ).id
            async with self.sessionmaker() as session:
                draft = await session.get_one(Draft, conversation.draft_id)
                await drafts.approve(
                    session,
                    actor,
                    draft.id,
                    expected_version=draft.version,
                    rules=drafts.ApprovalRules(),
                )
        except DomainError:
            return  # the worker changed the ticket meanwhile: look again next time
        conversation.approved = True
        self.expected.approved_drafts[conversation.draft_id] = conversation.number

    async def _sent_reply(self, conversation: _Conversation) -> str | None:
        async with self.sessionmaker() as session:
            row = (
                await session.execute(
                    select(Draft.status, OutboxEntry.message_id_header)
                    .join(OutboxEntry, OutboxEntry.draft_id == Draft.id)
                    .where(Draft.id == conversation.draft_id)
                )
            ).first()
        if row is None or row[0] != DraftStatus.SENT.value:
            return None
        return str(row[1])

    async def synced_since(self, moment: datetime) -> bool:
        """Whether a sync of the mailbox has finished successfully since `moment`."""
        async with self.sessionmaker() as session:
            mailbox = await session.get_one(Mailbox, self.expected.mailbox_id)
            done = mailbox.last_sync_succeeded_at
        return done is not None and done > moment

    async def settled(self) -> bool:
        """Everything answered and sent, every Gmail message stored somewhere."""
        if any(c.answer and not c.approved for c in self.conversations):
            return False
        ids = [m.id for m in self.gmail.state.snapshot()]
        mailbox = self.expected.mailbox_id
        async with self.sessionmaker() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.mailbox_id == mailbox, Message.provider_message_id.in_(ids))
            )
            quarantined = await session.scalar(
                select(func.count())
                .select_from(QuarantinedMessage)
                .where(
                    QuarantinedMessage.mailbox_id == mailbox,
                    QuarantinedMessage.provider_message_id.in_(ids),
                )
            )
            unsent = await session.scalar(
                select(func.count())
                .select_from(Draft)
                .where(
                    Draft.id.in_(self.expected.approved_drafts),
                    Draft.status != DraftStatus.SENT.value,
                )
            )
        return (stored or 0) + (quarantined or 0) >= len(ids) and not unsent
