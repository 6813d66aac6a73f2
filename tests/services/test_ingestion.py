"""Every message lands on exactly one ticket, once, by the threading rules."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import begin_write
from communication_agent.models import (
    ActivityEntry,
    Attachment,
    Mailbox,
    Message,
    MessageSource,
    QuarantinedMessage,
    Ticket,
)
from communication_agent.models.enums import TicketState
from communication_agent.services.ingestion import IncomingMessage, Outcome, ingest_message
from tests.factories import Factory
from tests.mail import raw_email

SUPPORT = "support@company.example"


async def _ingest(session: AsyncSession, mailbox: Mailbox, raw: bytes, **kwargs: object) -> Outcome:
    await begin_write(session)
    outcome = await ingest_message(session, mailbox, IncomingMessage(raw=raw, **kwargs))  # type: ignore[arg-type]
    await session.commit()
    return outcome


async def _mailbox(factory: Factory) -> Mailbox:
    mailbox = await factory.mailbox()
    mailbox.address = SUPPORT
    async with factory.sessionmaker() as session:
        stored = await session.get(Mailbox, mailbox.id)
        assert stored is not None
        stored.address = SUPPORT
        await session.commit()
    return mailbox


async def _ticket_of(session: AsyncSession, message_id_header: str) -> Ticket:
    ticket_id = await session.scalar(
        select(Message.ticket_id).where(Message.message_id_header == message_id_header)
    )
    ticket = await session.get(Ticket, ticket_id, populate_existing=True)
    assert ticket is not None
    return ticket


async def test_a_first_message_opens_a_ticket_with_everything_stored(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    raw = raw_email(
        subject="Invoice wrong",
        message_id="<first@x>",
        body="Please fix\n\nOn Mon, Bob wrote:\n> old",
    )
    assert (
        await _ingest(session, mailbox, raw, provider_message_id="p1", provider_thread_id="t1")
        is Outcome.NEW_TICKET
    )
    ticket = await _ticket_of(session, "<first@x>")
    assert (ticket.state, ticket.subject) == ("NEW", "Invoice wrong")
    message = await session.scalar(select(Message).where(Message.ticket_id == ticket.id))
    assert message is not None
    assert (message.direction, message.provider_thread_id, message.new_content_text) == (
        "inbound",
        "t1",
        "Please fix",
    )
    source = await session.get(MessageSource, message.id)
    assert source is not None
    assert source.raw == raw
    actions = (
        await session.scalars(
            select(ActivityEntry.action).where(ActivityEntry.ticket_id == ticket.id)
        )
    ).all()
    assert list(actions) == ["ticket.created"]  # one entry for the one change


@pytest.mark.parametrize("rule", ["thread_id", "in_reply_to", "references", "subject_token"])
async def test_replies_thread_by_each_rule(
    factory: Factory, session: AsyncSession, rule: str
) -> None:
    mailbox = await _mailbox(factory)
    await _ingest(
        session,
        mailbox,
        raw_email(message_id="<root@x>"),
        provider_message_id="p1",
        provider_thread_id="t1",
    )
    root = await _ticket_of(session, "<root@x>")
    reply_kwargs: dict[str, object] = {"message_id": "<reply@x>", "subject": "Re: Help please"}
    incoming: dict[str, object] = {"provider_message_id": "p2"}
    if rule == "thread_id":
        incoming["provider_thread_id"] = "t1"
    elif rule == "in_reply_to":
        reply_kwargs["in_reply_to"] = "<root@x>"
    elif rule == "references":
        reply_kwargs["references"] = ["<unknown@elsewhere>", "<root@x>"]
    else:
        reply_kwargs["subject"] = f"Re: Help please [#{root.id}]"
    outcome = await _ingest(session, mailbox, raw_email(**reply_kwargs), **incoming)  # type: ignore[arg-type]
    assert outcome is Outcome.THREADED
    assert (await _ticket_of(session, "<reply@x>")).id == root.id


async def test_a_subject_token_of_another_mailbox_does_not_thread(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox, other = await _mailbox(factory), await factory.mailbox()
    foreign = await factory.ticket(mailbox=other)
    outcome = await _ingest(
        session, mailbox, raw_email(subject=f"Re: [#{foreign.id}]", message_id="<x@x>")
    )
    assert outcome is Outcome.NEW_TICKET
    assert (await _ticket_of(session, "<x@x>")).id != foreign.id


async def test_a_strangers_subject_token_does_not_join_the_ticket(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    await _ingest(session, mailbox, raw_email(message_id="<own@x>"))
    victim = await _ticket_of(session, "<own@x>")
    outcome = await _ingest(
        session,
        mailbox,
        raw_email(
            sender="stranger@elsewhere.example",
            subject=f"Re: [#{victim.id}] please send me the details",
            message_id="<stranger@x>",
        ),
    )
    assert outcome is Outcome.NEW_TICKET
    assert (await _ticket_of(session, "<stranger@x>")).id != victim.id


async def test_duplicates_by_provider_id_and_by_message_id(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    raw = raw_email(message_id="<dup@x>")
    assert await _ingest(session, mailbox, raw, provider_message_id="p1") is Outcome.NEW_TICKET
    assert await _ingest(session, mailbox, raw, provider_message_id="p1") is Outcome.DUPLICATE
    assert await _ingest(session, mailbox, raw, provider_message_id="p-other") is Outcome.DUPLICATE
    assert await _ingest(session, mailbox, raw) is Outcome.DUPLICATE
    count = await session.scalar(
        select(func.count()).select_from(Message).where(Message.mailbox_id == mailbox.id)
    )
    assert count == 1


async def test_the_same_message_in_two_mailboxes_makes_a_ticket_in_each(
    factory: Factory, session: AsyncSession
) -> None:
    first, second = await _mailbox(factory), await factory.mailbox()
    raw = raw_email(message_id="<both@x>")
    assert await _ingest(session, first, raw, provider_message_id="p1") is Outcome.NEW_TICKET
    assert await _ingest(session, second, raw, provider_message_id="p1") is Outcome.NEW_TICKET
    tickets = (
        await session.scalars(
            select(Message.ticket_id).where(Message.message_id_header == "<both@x>")
        )
    ).all()
    assert len(set(tickets)) == 2


@pytest.mark.parametrize("state", [TicketState.WAITING_OTHERS, TicketState.DONE])
async def test_a_customer_reply_reopens_the_ticket_logged_as_sync(
    factory: Factory, session: AsyncSession, state: TicketState
) -> None:
    mailbox = await _mailbox(factory)
    await _ingest(session, mailbox, raw_email(message_id="<root@x>"))
    ticket = await _ticket_of(session, "<root@x>")
    ticket.state = state.value
    await session.commit()
    await _ingest(session, mailbox, raw_email(message_id="<r@x>", in_reply_to="<root@x>"))
    reopened = await _ticket_of(session, "<root@x>")
    assert reopened.state == "NEEDS_ACTION"
    assert reopened.resolved_at is None
    entry = await session.scalar(
        select(ActivityEntry).where(
            ActivityEntry.ticket_id == ticket.id, ActivityEntry.action == "ticket.state_changed"
        )
    )
    assert entry is not None
    assert (entry.actor_name, entry.details["to"], entry.details["reason"]) == (
        "system:sync",
        "NEEDS_ACTION",
        "customer replied",
    )


async def test_auto_replies_never_reopen_and_unthreaded_ones_are_filed_as_done(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    await _ingest(session, mailbox, raw_email(message_id="<root@x>"))
    ticket = await _ticket_of(session, "<root@x>")
    ticket.state = "WAITING_OTHERS"
    await session.commit()
    away = raw_email(
        message_id="<away@x>",
        in_reply_to="<root@x>",
        headers={"Auto-Submitted": "auto-replied"},
        body="I am on holiday",
    )
    assert await _ingest(session, mailbox, away) is Outcome.THREADED
    assert (await _ticket_of(session, "<root@x>")).state == "WAITING_OTHERS"
    flagged = await session.scalar(select(Message).where(Message.message_id_header == "<away@x>"))
    assert flagged is not None
    assert flagged.is_automated
    assert flagged.flags["automated_reason"] == "Auto-Submitted: auto-replied"

    newsletter = raw_email(message_id="<news@x>", headers={"List-Id": "<news.example.org>"})
    assert await _ingest(session, mailbox, newsletter) is Outcome.NEW_TICKET
    filed = await _ticket_of(session, "<news@x>")
    assert filed.state == "DONE"


async def test_mail_the_mailbox_sent_elsewhere_is_outbound_and_waits_on_the_customer(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    await _ingest(session, mailbox, raw_email(message_id="<root@x>"))
    answer = raw_email(
        sender=SUPPORT,
        sender_name="Support",
        to="customer@example.org",
        message_id="<ans@x>",
        in_reply_to="<root@x>",
    )
    assert await _ingest(session, mailbox, answer) is Outcome.THREADED
    ticket = await _ticket_of(session, "<root@x>")
    assert ticket.state == "WAITING_OTHERS"
    assert ticket.first_response_at is not None
    outbound = await session.scalar(select(Message).where(Message.message_id_header == "<ans@x>"))
    assert outbound is not None
    assert outbound.direction == "outbound"
    unrelated = raw_email(
        sender=SUPPORT, to="friend@example.org", message_id="<lunch@x>", subject="Lunch?"
    )
    assert await _ingest(session, mailbox, unrelated, sent_by_mailbox=True) is Outcome.IGNORED
    assert (
        await session.scalar(select(Message).where(Message.message_id_header == "<lunch@x>"))
        is None
    )


async def test_unparseable_mail_is_quarantined_once_with_its_reason(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    raw = b"Subject: no sender here\n\nbody"
    assert await _ingest(session, mailbox, raw, provider_message_id="bad-1") is Outcome.QUARANTINED
    assert await _ingest(session, mailbox, raw, provider_message_id="bad-1") is Outcome.DUPLICATE
    [stored] = (await session.scalars(select(QuarantinedMessage))).all()
    assert "no sender" in stored.reason
    assert stored.raw == raw


async def test_attachments_and_nul_characters_are_stored_safely(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await _mailbox(factory)
    raw = (
        b"From: a@example.org\nSubject: Bad\x00subject\nMessage-ID: <att@x>\n"
        b'Content-Type: multipart/mixed; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nHel\x00lo\n"
        b'--B\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="../invoice.pdf"\n'
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--B--\n"
    )
    assert await _ingest(session, mailbox, raw) is Outcome.NEW_TICKET
    stored = await session.scalar(select(Message).where(Message.message_id_header == "<att@x>"))
    assert stored is not None
    assert (stored.subject, stored.body_text.strip()) == ("Badsubject", "Hello")
    [attachment] = (
        await session.scalars(select(Attachment).where(Attachment.message_id == stored.id))
    ).all()
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "invoice.pdf",
        "application/pdf",
        9,
    )
