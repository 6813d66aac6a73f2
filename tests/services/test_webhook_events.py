"""Webhook events are queued in the transaction of the change they report: one delivery per
subscribed, active endpoint when it commits, none when it rolls back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.core.config import Settings
from communication_agent.core.db import begin_write
from communication_agent.models import Draft, Mailbox, Ticket, WebhookDelivery
from communication_agent.models.enums import Role, TicketState
from communication_agent.services import assistant, tickets, webhooks
from communication_agent.services.actors import Actor
from communication_agent.services.auth import actor_for_user
from communication_agent.services.ingestion import IncomingMessage, ingest_batch
from communication_agent.services.webhook_events import (
    DRAFT_READY,
    EVENT_TYPES,
    REPLY_SENT,
    TICKET_STATE_CHANGED,
)
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.gmail_server import GmailTestServer
from tests.mail import raw_email
from tests.sending.test_sending import _approved, _send_due, _ticket_with_question

SessionMaker = async_sessionmaker[AsyncSession]
ADMIN = Actor.system("tests")


@pytest.fixture
def gmail() -> Iterator[GmailTestServer]:
    with GmailTestServer() as server:
        yield server


async def add_endpoint(
    sessionmaker: SessionMaker, events: Sequence[str] = EVENT_TYPES, url: str = "http://a.test/h"
) -> webhooks.CreatedEndpoint:
    async with sessionmaker() as session:
        return await webhooks.create_endpoint(
            session, ADMIN, TEST_SECRET_KEY, url=url, events=events
        )


async def deliveries(sessionmaker: SessionMaker) -> list[WebhookDelivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def payload(delivery: WebhookDelivery) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(delivery.body)
    return body


async def test_a_state_change_queues_one_delivery_per_subscribed_active_endpoint(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    wanted = await add_endpoint(sessionmaker, [TICKET_STATE_CHANGED])
    await add_endpoint(sessionmaker, [DRAFT_READY, REPLY_SENT])  # not subscribed
    disabled = await add_endpoint(sessionmaker)
    async with sessionmaker() as session:
        await webhooks.update_endpoint(session, ADMIN, disabled.endpoint.id, is_active=False)
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    async with sessionmaker() as session:
        await tickets.change_state(
            session,
            actor_for_user(operator.user),
            ticket.id,
            target=TicketState.NEEDS_ACTION,
            expected_version=ticket.version,
            reason="on it",
        )

    [delivery] = await deliveries(sessionmaker)
    assert (delivery.endpoint_id, delivery.event_type, delivery.status, delivery.attempts) == (
        wanted.endpoint.id,
        TICKET_STATE_CHANGED,
        "pending",
        0,
    )
    body = payload(delivery)
    assert body["id"] == delivery.event_id
    assert body["id"].startswith("evt_")
    assert body["type"] == TICKET_STATE_CHANGED
    assert body["created_at"].endswith("+00:00")
    assert body["data"] == {
        "ticket_id": ticket.id,
        "mailbox_id": ticket.mailbox_id,
        "from": "NEW",
        "to": "NEEDS_ACTION",
        "actor": f"user:{operator.user.email}",
        "actor_user_id": operator.user.id,
        "reason": "on it",
        "ticket_path": f"/tickets/{ticket.id}",
    }


async def test_one_event_has_one_id_across_endpoints(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    await add_endpoint(sessionmaker)
    await add_endpoint(sessionmaker)
    ticket = await factory.ticket()
    async with sessionmaker() as session:
        await tickets.change_state(
            session, ADMIN, ticket.id, target=TicketState.DONE, expected_version=ticket.version
        )
    first, second = await deliveries(sessionmaker)
    assert first.endpoint_id != second.endpoint_id
    assert first.event_id == second.event_id
    assert first.body == second.body


async def test_a_change_rolled_back_before_or_after_its_flush_queues_nothing(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    await add_endpoint(sessionmaker)
    ticket = await factory.ticket()
    for flushed in (False, True):
        async with sessionmaker() as session:
            await begin_write(session)
            loaded = await session.get_one(Ticket, ticket.id)
            tickets.apply_transition(session, ADMIN, loaded, TicketState.DONE, "oops")
            if flushed:
                await session.flush()
                async with sessionmaker() as other:  # not visible outside the transaction
                    assert await other.scalar(select(WebhookDelivery.id)) is None
            await session.rollback()
            # The session goes on to commit something else: the discarded event stays discarded.
            await begin_write(session)
            mailbox = await session.get_one(Mailbox, ticket.mailbox_id)
            mailbox.name = f"renamed-{flushed}"
            await session.commit()
    assert await deliveries(sessionmaker) == []


async def test_a_transition_that_loses_a_race_queues_nothing_but_the_winner_does(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    await add_endpoint(sessionmaker)
    ticket = await factory.ticket()
    async with sessionmaker() as loser:
        stale = await loser.get_one(Ticket, ticket.id)
        await loser.commit()  # keeps the object, at the version it read
        async with sessionmaker() as winner:
            await tickets.change_state(
                winner, ADMIN, ticket.id, target=TicketState.DONE, expected_version=stale.version
            )
        await begin_write(loser)
        loser.add(stale)
        tickets.apply_transition(loser, ADMIN, stale, TicketState.NEEDS_ACTION, "too late")
        with pytest.raises(StaleDataError):
            await loser.commit()
        await loser.rollback()
    [delivery] = await deliveries(sessionmaker)
    assert payload(delivery)["data"]["to"] == "DONE"


async def test_a_savepoint_rolled_back_drops_only_its_own_events(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    await add_endpoint(sessionmaker)
    kept, dropped = await factory.ticket(), await factory.ticket()
    async with sessionmaker() as session:
        await begin_write(session)
        outer = await session.get_one(Ticket, kept.id)
        inner = await session.get_one(Ticket, dropped.id)
        tickets.apply_transition(session, ADMIN, outer, TicketState.DONE, "kept")
        savepoint = await session.begin_nested()
        tickets.apply_transition(session, ADMIN, inner, TicketState.DONE, "dropped")
        await savepoint.rollback()
        await session.commit()
    [delivery] = await deliveries(sessionmaker)
    assert payload(delivery)["data"]["ticket_id"] == kept.id


async def test_a_ticket_created_and_moved_in_one_batch_is_reported_with_its_id(
    sessionmaker: SessionMaker, factory: Factory
) -> None:
    """Ingestion opens a ticket and, for the mailbox's own reply in the same batch, moves it to
    WAITING_OTHERS before the ticket has an id: the event gets it at the flush."""
    await add_endpoint(sessionmaker)
    mailbox = await factory.mailbox()
    question = raw_email(message_id="<q@x>", subject="Question", to=mailbox.address)
    answer = raw_email(
        sender=mailbox.address, to="customer@example.org", subject="Re: Question",
        message_id="<a@x>", in_reply_to="<q@x>",
    )  # fmt: skip
    async with sessionmaker() as session:
        await begin_write(session)
        stored = await session.get_one(Mailbox, mailbox.id)
        batch = [IncomingMessage(raw=question), IncomingMessage(raw=answer)]
        await ingest_batch(session, stored, batch, isolated=False)
        await session.commit()
        ticket_id = await session.scalar(select(Ticket.id))
    [delivery] = await deliveries(sessionmaker)
    data = payload(delivery)["data"]
    assert (data["ticket_id"], data["from"], data["to"]) == (ticket_id, "NEW", "WAITING_OTHERS")
    assert data["actor"] == "system:sync"


async def test_triage_and_a_model_proposal_report_the_move_and_the_ready_draft(
    sessionmaker: SessionMaker, factory: Factory, settings: Settings
) -> None:
    await add_endpoint(sessionmaker)
    ticket = await factory.ticket(body="I was charged twice for my subscription, please refund.")
    model = reasoning_model(settings)
    config = assistant.AssistantConfig.from_settings(settings)
    try:
        await assistant.triage_ticket(sessionmaker, model, config, ticket.id)
        draft = await assistant.draft_ticket(sessionmaker, model, config, ticket.id)
    finally:
        await model.aclose()
    found = await deliveries(sessionmaker)
    moved, ready = found
    assert payload(moved)["data"]["actor"] == "system:triage"
    assert ready.event_type == DRAFT_READY
    async with sessionmaker() as session:
        triaged = await session.get_one(Ticket, ticket.id)
    data = payload(ready)["data"]
    assert data == {
        "ticket_id": ticket.id,
        "mailbox_id": ticket.mailbox_id,
        "draft_id": draft.id,
        "category": triaged.category,
        "priority": triaged.priority,
        "language": draft.language,
        "review_flags": draft.review_flags,
        "ticket_path": f"/tickets/{ticket.id}",
    }
    assert triaged.category is not None
    assert "charged" not in ready.body  # no email text in payloads


async def test_a_sent_reply_reports_its_message_id_and_the_tickets_move(
    sessionmaker: SessionMaker, settings: Settings, gmail: GmailTestServer, factory: Factory
) -> None:
    _mailbox_id, ticket_id = await _ticket_with_question(sessionmaker, settings, gmail)
    await add_endpoint(sessionmaker, [REPLY_SENT])
    draft = await _approved(sessionmaker, factory, ticket_id, "Hello Casey,\n\nWe refunded one.")
    assert await _send_due(sessionmaker, settings, gmail) == 1
    [sent] = await deliveries(sessionmaker)
    async with sessionmaker() as session:
        stored = await session.get_one(Draft, draft.id)
    data = payload(sent)["data"]
    assert data["draft_id"] == draft.id
    assert data["ticket_id"] == ticket_id
    assert data["approved_by_user_id"] == draft.approved_by_id
    assert data["message_id_header"].startswith("<")
    assert data["sent_at"] == (stored.sent_at.isoformat() if stored.sent_at else None)
    assert "refunded" not in sent.body
