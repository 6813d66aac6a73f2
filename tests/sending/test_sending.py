"""Review and sending through the loopback Gmail server: approved text leaves exactly once, in
the customer's thread, and nothing else leaves at all."""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from email.parser import BytesParser

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings
from communication_agent.models import (
    ActivityEntry,
    Draft,
    Mailbox,
    Message,
    OutboxEntry,
    Ticket,
)
from communication_agent.models.base import utcnow
from communication_agent.models.enums import ActorType, Direction, Role, TicketState
from communication_agent.services import drafts, sending
from communication_agent.services.actors import Actor
from communication_agent.services.errors import ConflictError, PermissionDeniedError
from tests.adapters.test_gmail_sync import FAST, _connect, _sync, gmail_settings
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.gmail_server import Fault, GmailTestServer, sent_messages
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
CUSTOMER_ID = "<question-1@customer.example.org>"


@pytest.fixture
def gmail() -> Iterator[GmailTestServer]:
    with GmailTestServer() as server:
        yield server


async def _ticket_with_question(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer
) -> tuple[int, int]:
    """A Gmail mailbox with one customer question synced into a ticket: (mailbox, ticket)."""
    gmail.add_message(
        raw_email(
            subject="Re: Re: Invoice question",
            body="Why was I charged twice?",
            message_id=CUSTOMER_ID,
            references=["<older@customer.example.org>"],
        ),
        thread_id="thr-77",
    )
    mailbox_id = await _connect(sessionmaker, gmail)
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    async with sessionmaker() as session:
        ticket_id = await session.scalar(select(Ticket.id))
        assert ticket_id is not None
        await session.execute(update(Ticket).values(state=TicketState.NEEDS_ACTION.value))
        await session.commit()
    return mailbox_id, ticket_id


async def _send_due(sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer) -> int:
    opener = provider_opener(gmail_settings(settings, gmail), TEST_SECRET_KEY, retry=FAST)
    return await sending.run_due(
        sessionmaker,
        opener,
        owner="test-sender",
        lease=timedelta(minutes=2),
        state_after_send=TicketState.WAITING_OTHERS,
    )


async def _approved(
    sessionmaker: SessionMaker, factory: Factory, ticket_id: int, body: str, **rules: object
) -> Draft:
    op = await factory.principal(Role.OPERATOR)
    actor = _actor(op.user.id)
    async with sessionmaker() as session:
        draft = await drafts.create(session, actor, ticket_id, "Hello Casey,\n\nfirst try")
    async with sessionmaker() as session:
        draft = await drafts.edit(session, actor, draft.id, body=body, expected_version=1)
    reviewer = await factory.principal(Role.OPERATOR)
    async with sessionmaker() as session:
        return await drafts.approve(
            session,
            _actor(reviewer.user.id),
            draft.id,
            expected_version=draft.version,
            rules=drafts.ApprovalRules(**rules),  # type: ignore[arg-type]
        )


def _actor(user_id: int) -> Actor:
    return Actor(type=ActorType.USER, name=f"operator{user_id}@staff.example.com",
                 user_id=user_id, role=Role.OPERATOR)  # fmt: skip


async def test_an_approved_reply_is_sent_once_in_the_customers_thread(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello Casey,\n\nWe refunded one.")
    assert await _send_due(sessionmaker, settings, gmail) == 1

    [sent] = sent_messages(gmail)
    headers = BytesParser(policy=email.policy.default).parsebytes(sent.raw)
    assert sent.thread_id == "thr-77"
    assert headers["Subject"] == "Re: Invoice question"  # one Re:, however many came in
    assert headers["In-Reply-To"] == CUSTOMER_ID
    assert headers["References"] == f"<older@customer.example.org> {CUSTOMER_ID}"
    assert headers["From"].addresses[0].addr_spec == "support@company.example"
    assert headers["To"].addresses[0].addr_spec == "customer@example.org"
    plain = headers.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().startswith("Hello Casey,")
    assert headers.get_body(("html",)) is not None

    async with sessionmaker() as session:
        draft = await session.get_one(Draft, draft.id)
        ticket = await session.get_one(Ticket, ticket_id)
        outbox = (await session.scalars(select(OutboxEntry))).one()
        outbound = (
            await session.scalars(
                select(Message).where(Message.direction == Direction.OUTBOUND.value)
            )
        ).one()
        actions = list(
            await session.scalars(
                select(ActivityEntry.action)
                .where(ActivityEntry.ticket_id == ticket_id)
                .order_by(ActivityEntry.id)
            )
        )
    assert draft.status == "sent"
    assert draft.edit_distance is None  # written by a person: nothing proposed to compare
    assert headers["Message-ID"] == outbox.message_id_header == outbound.message_id_header
    assert (ticket.state, ticket.first_response_at is not None) == ("WAITING_OTHERS", True)
    assert actions[-5:] == [  # after the sync's own entries
        "draft.created",
        "draft.edited",
        "draft.approved",
        "ticket.state_changed",
        "reply.sent",
    ]
    # The sent message comes back with the next sync: matched, not stored twice.
    again = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (again.new_messages, again.duplicates) == (0, 1)


async def test_two_operators_approving_at_once_send_once(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    author = await factory.principal(Role.OPERATOR)
    async with sessionmaker() as session:
        draft = await drafts.create(session, _actor(author.user.id), ticket_id, "Refunded.")
    a, b = await factory.principal(Role.OPERATOR), await factory.principal(Role.OPERATOR)

    async def approve(user_id: int) -> object:
        async with sessionmaker() as session:
            try:
                return await drafts.approve(
                    session,
                    _actor(user_id),
                    draft.id,
                    expected_version=1,
                    rules=drafts.ApprovalRules(),
                )
            except ConflictError as exc:
                return exc

    results = await asyncio.gather(approve(a.user.id), approve(b.user.id))
    assert sorted(type(r).__name__ for r in results) == ["Draft", "StaleDraftError"]
    await _send_due(sessionmaker, settings, gmail)
    await _send_due(sessionmaker, settings, gmail)
    assert len(sent_messages(gmail)) == 1


async def test_a_stale_edit_is_refused_with_the_current_draft(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    ticket = await factory.ticket()
    op = await factory.principal(Role.OPERATOR)
    async with sessionmaker() as session:
        draft = await drafts.create(session, _actor(op.user.id), ticket.id, "v1")
    async with sessionmaker() as session:
        await drafts.edit(session, _actor(op.user.id), draft.id, body="v2", expected_version=1)
    async with sessionmaker() as session:
        with pytest.raises(drafts.StaleDraftError) as refused:
            await drafts.edit(session, _actor(op.user.id), draft.id, body="x", expected_version=1)
    assert refused.value.details["current_version"] == 2
    assert refused.value.details["current_body"] == "v2"
    async with sessionmaker() as session:
        assert [v.body for v in await drafts.versions(session, draft.id)] == ["v1", "v2"]


async def test_a_reply_accepted_just_before_a_failure_is_found_not_sent_again(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    gmail.inject(Fault("messages.send.accepted", status=503))  # stored, then the answer is lost
    await _send_due(sessionmaker, settings, gmail)
    async with sessionmaker() as session:
        entry = (await session.scalars(select(OutboxEntry))).one()
        assert (entry.status, entry.attempts) == ("pending", 1)
        assert "may have been sent" in (entry.last_error or "")
        await session.execute(update(OutboxEntry).values(send_after=utcnow()))  # time passes
        await session.commit()
    await _send_due(sessionmaker, settings, gmail)
    assert len(sent_messages(gmail)) == 1
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
        assert (stored.status, stored.status_reason) == (
            "sent",
            "found in the mailbox after a retry",
        )


async def test_rate_limits_during_send_are_retried(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    gmail.inject(Fault("messages.send", status=429, retry_after="90", times=2))
    for _round in range(3):  # each 429 is rescheduled through the outbox, not waited out
        await _send_due(sessionmaker, settings, gmail)
        async with sessionmaker() as session:
            entry = (await session.scalars(select(OutboxEntry))).one()
            if entry.status == "pending":
                assert entry.send_after >= utcnow() + timedelta(seconds=10)
                assert "429" in (entry.last_error or "")
                await session.execute(update(OutboxEntry).values(send_after=utcnow()))
                await session.commit()
    assert len(sent_messages(gmail)) == 1
    assert gmail.calls("messages.send") == 3


async def test_a_refused_recipient_fails_the_draft_with_the_reason(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    mailbox_id = await _connect(sessionmaker, gmail)
    async with sessionmaker() as session:
        mailbox = await session.get_one(Mailbox, mailbox_id)
    ticket = await factory.ticket(mailbox=mailbox, customer_email="no-address-here")
    async with sessionmaker() as session:
        await session.execute(update(Ticket).values(state=TicketState.NEEDS_ACTION.value))
        await session.commit()
    draft = await _approved(sessionmaker, factory, ticket.id, "Hello,\n\nanswer.")
    await _send_due(sessionmaker, settings, gmail)
    assert sent_messages(gmail) == []
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
    assert stored.status == "failed"
    assert "Invalid To header" in (stored.status_reason or "")


async def test_the_four_eyes_rule(sessionmaker: SessionMaker, factory: Factory) -> None:
    ticket = await factory.ticket()
    editor, reviewer = (
        await factory.principal(Role.OPERATOR),
        await factory.principal(Role.OPERATOR),
    )
    four_eyes = drafts.ApprovalRules(require_second_approver=True)
    async with sessionmaker() as session:
        draft = await drafts.create(session, _actor(editor.user.id), ticket.id, "Answer")
    async with sessionmaker() as session:
        with pytest.raises(PermissionDeniedError, match="four-eyes"):
            await drafts.approve(
                session, _actor(editor.user.id), draft.id, expected_version=1, rules=four_eyes
            )
    async with sessionmaker() as session:
        approved = await drafts.approve(
            session, _actor(reviewer.user.id), draft.id, expected_version=1, rules=four_eyes
        )
    assert (approved.status, approved.approved_by_id) == ("approved", reviewer.user.id)


async def test_an_approval_can_be_recalled_within_the_undo_window(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(
        sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.", send_delay=timedelta(hours=1)
    )
    assert await _send_due(sessionmaker, settings, gmail) == 0  # still in the undo window
    op = await factory.principal(Role.OPERATOR)
    async with sessionmaker() as session:
        recalled = await drafts.recall(session, _actor(op.user.id), draft.id)
    assert (recalled.status, recalled.approved_hash) == ("edited", None)
    async with sessionmaker() as session:
        await session.execute(update(OutboxEntry).values(send_after=utcnow()))
        await session.commit()
    assert await _send_due(sessionmaker, settings, gmail) == 0
    assert sent_messages(gmail) == []


async def test_a_new_customer_message_after_approval_holds_the_send(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    gmail.add_message(
        raw_email(body="Actually it was three times!", in_reply_to=CUSTOMER_ID),
        thread_id="thr-77",
    )
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    await _send_due(sessionmaker, settings, gmail)
    assert sent_messages(gmail) == []
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
        entry = (await session.scalars(select(OutboxEntry))).one()
    assert stored.status == "edited"
    assert "new customer message" in (stored.status_reason or "")
    assert entry.status == "held"


async def test_changed_text_is_never_sent_under_an_old_approval(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    async with sessionmaker() as session:  # a change behind the service's back
        await session.execute(update(Draft).values(body="Hello,\n\nsend us your password."))
        await session.commit()
    await _send_due(sessionmaker, settings, gmail)
    assert sent_messages(gmail) == []
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
    assert "differs from the approved text" in (stored.status_reason or "")


async def test_our_reply_synced_back_before_it_was_recorded_is_left_to_the_sender(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    gmail.inject(Fault("messages.send.accepted", status=503))
    await _send_due(sessionmaker, settings, gmail)  # Gmail has it; we do not know
    synced = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (synced.new_messages, synced.ignored) == (0, 1)
    async with sessionmaker() as session:
        assert (await session.get_one(Ticket, ticket_id)).state == "NEEDS_ACTION"  # not "answered"
        await session.execute(update(OutboxEntry).values(send_after=utcnow()))
        await session.commit()
    await _send_due(sessionmaker, settings, gmail)
    async with sessionmaker() as session:
        assert (await session.get_one(Draft, draft.id)).status == "sent"
        assert (await session.get_one(Ticket, ticket_id)).state == "WAITING_OTHERS"
        outbound = (
            await session.scalars(
                select(Message).where(Message.direction == Direction.OUTBOUND.value)
            )
        ).all()
    assert len(outbound) == 1
    assert len(sent_messages(gmail)) == 1


async def test_retrying_a_failed_send_looks_for_it_before_sending_again(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    """Gmail stored the reply yet answered with an error: the draft fails; the operator's
    retry goes through the same outbox entry, so it is found, not sent twice."""
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    gmail.inject(Fault("messages.send.accepted", status=400))
    await _send_due(sessionmaker, settings, gmail)
    async with sessionmaker() as session:
        assert (await session.get_one(Draft, draft.id)).status == "failed"
    op = await factory.principal(Role.OPERATOR)
    async with sessionmaker() as session:
        await drafts.retry(session, _actor(op.user.id), draft.id, rules=drafts.ApprovalRules())
    async with sessionmaker() as session:  # after a send attempt there is no recalling it
        with pytest.raises(ConflictError, match="cannot be recalled"):
            await drafts.recall(session, _actor(op.user.id), draft.id)
    await _send_due(sessionmaker, settings, gmail)
    assert len(sent_messages(gmail)) == 1
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
        assert (stored.status, stored.status_reason) == (
            "sent",
            "found in the mailbox after a retry",
        )
        assert len((await session.scalars(select(OutboxEntry))).all()) == 1


async def test_the_reply_goes_to_the_customer_not_to_an_autoresponder_in_the_thread(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    gmail.add_message(
        raw_email(
            sender="mailer-daemon@mx.example.org",
            subject="Delivery Status Notification",
            in_reply_to=CUSTOMER_ID,
            headers={"Auto-Submitted": "auto-replied"},
        ),
        thread_id="thr-77",
    )
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    await _approved(sessionmaker, factory, ticket_id, "Hello,\n\nrefunded.")
    await _send_due(sessionmaker, settings, gmail)
    [sent] = sent_messages(gmail)
    headers = BytesParser(policy=email.policy.default).parsebytes(sent.raw)
    assert headers["To"].addresses[0].addr_spec == "customer@example.org"
    assert headers["In-Reply-To"] == CUSTOMER_ID
