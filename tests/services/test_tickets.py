from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import ActivityEntry, Message, Ticket
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Priority, Role, TicketState
from communication_agent.services import tickets
from communication_agent.services.actors import Actor
from communication_agent.services.auth import actor_for_user
from communication_agent.services.errors import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    StaleVersionError,
)
from communication_agent.services.tickets import TicketFilters
from tests.factories import Factory

SessionMaker = async_sessionmaker[AsyncSession]


async def _operator(factory: Factory) -> Actor:
    return actor_for_user((await factory.principal(Role.OPERATOR)).user)


async def _log(session: AsyncSession, ticket_id: int) -> list[ActivityEntry]:
    query = select(ActivityEntry).where(ActivityEntry.ticket_id == ticket_id)
    return list((await session.scalars(query.order_by(ActivityEntry.id))).all())


async def test_state_change_stamps_bumps_version_and_logs_in_one_step(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    ticket = await factory.ticket()
    before = utcnow()
    changed = await tickets.change_state(
        session, actor, ticket.id, target=TicketState.DONE, expected_version=1, reason="answered"
    )
    assert changed.state == TicketState.DONE
    assert changed.version == 2
    assert changed.resolved_at is not None
    assert changed.resolved_at >= before
    assert changed.state_changed_at >= before
    [entry] = await _log(session, ticket.id)
    assert entry.action == "ticket.state_changed"
    assert entry.actor_user_id == actor.user_id
    assert entry.actor_type == "user"
    assert entry.details == {"from": "NEW", "to": "DONE", "reason": "answered"}


async def test_reopening_clears_the_resolution_time(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    ticket = await factory.ticket(state=TicketState.DONE)
    reopened = await tickets.change_state(
        session, actor, ticket.id, target=TicketState.NEEDS_ACTION, expected_version=1
    )
    assert reopened.resolved_at is None


async def test_invalid_transition_changes_nothing_and_logs_nothing(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    ticket = await factory.ticket(state=TicketState.DONE)
    with pytest.raises(InvalidTransitionError, match="allowed targets: NEEDS_ACTION"):
        await tickets.change_state(
            session, actor, ticket.id, target=TicketState.WAITING_OTHERS, expected_version=1
        )
    await session.rollback()
    fresh = await session.get(Ticket, ticket.id, populate_existing=True)
    assert fresh is not None
    assert fresh.state == "DONE"
    assert fresh.version == 1
    assert await _log(session, ticket.id) == []


async def test_stale_version_is_refused_with_the_current_version(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    ticket = await factory.ticket()
    await tickets.change_state(
        session, actor, ticket.id, target=TicketState.NEEDS_ACTION, expected_version=1
    )
    with pytest.raises(StaleVersionError) as info:
        await tickets.change_state(
            session, actor, ticket.id, target=TicketState.DONE, expected_version=1
        )
    assert info.value.details["current_version"] == 2
    assert len(await _log(session, ticket.id)) == 1


async def test_unknown_ticket_is_not_found(factory: Factory, session: AsyncSession) -> None:
    actor = await _operator(factory)
    with pytest.raises(NotFoundError, match="Ticket 4242 does not exist"):
        await tickets.change_state(
            session, actor, 4242, target=TicketState.DONE, expected_version=1
        )


async def test_system_actor_is_recorded_by_component_name(
    factory: Factory, session: AsyncSession
) -> None:
    ticket = await factory.ticket()
    await tickets.change_state(
        session,
        Actor.system("triage"),
        ticket.id,
        target=TicketState.NEEDS_ACTION,
        expected_version=1,
    )
    [entry] = await _log(session, ticket.id)
    assert (entry.actor_type, entry.actor_name, entry.actor_user_id) == (
        "system",
        "system:triage",
        None,
    )


async def test_assign_and_unassign_are_logged_and_versioned(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    other = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    assigned = await tickets.assign(session, actor, ticket.id, assignee_id=other.user.id)
    assert assigned.assignee_id == other.user.id
    assert assigned.version == 2
    again = await tickets.assign(session, actor, ticket.id, assignee_id=other.user.id)
    assert again.version == 2  # a no-op changes nothing
    unassigned = await tickets.assign(session, actor, ticket.id, assignee_id=None)
    assert unassigned.assignee_id is None
    assert unassigned.version == 3
    entries = await _log(session, ticket.id)
    assert [(e.action, e.details["from"], e.details["to"]) for e in entries] == [
        ("ticket.assigned", None, other.user.id),
        ("ticket.assigned", other.user.id, None),
    ]


async def test_viewers_and_unknown_users_cannot_be_assigned(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    with pytest.raises(InvalidInputError, match="is a viewer"):
        await tickets.assign(session, actor, ticket.id, assignee_id=viewer.user.id)
    with pytest.raises(InvalidInputError, match="does not exist"):
        await tickets.assign(session, actor, ticket.id, assignee_id=99_999)


async def test_notes_do_not_change_the_ticket_version(
    factory: Factory, session: AsyncSession
) -> None:
    actor = await _operator(factory)
    ticket = await factory.ticket()
    note = await tickets.add_note(session, actor, ticket.id, body="Customer is a reseller.")
    assert note.author_id == actor.user_id
    fresh = await session.get(Ticket, ticket.id, populate_existing=True)
    assert fresh is not None
    assert fresh.version == 1
    [entry] = await _log(session, ticket.id)
    assert (entry.action, entry.details) == ("note.added", {"note_id": note.id})


async def test_filters_select_exactly_the_matching_tickets(
    factory: Factory, session: AsyncSession
) -> None:
    agent = await factory.principal(Role.OPERATOR)
    box_a, box_b = await factory.mailbox(), await factory.mailbox()
    urgent = await factory.ticket(mailbox=box_a, priority=Priority.URGENT, category="billing")
    mine = await factory.ticket(
        mailbox=box_b, state=TicketState.NEEDS_ACTION, assignee_id=agent.user.id
    )
    done = await factory.ticket(mailbox=box_b, state=TicketState.DONE, category="billing")

    async def ids(filters: TicketFilters) -> set[int]:
        return {t.id for t in (await tickets.list_tickets(session, filters)).items}

    assert await ids(TicketFilters()) == {urgent.id, mine.id, done.id}
    assert await ids(TicketFilters(states=(TicketState.NEW, TicketState.DONE))) == {
        urgent.id,
        done.id,
    }
    assert await ids(TicketFilters(priorities=(Priority.URGENT,))) == {urgent.id}
    assert await ids(TicketFilters(assignee_id=agent.user.id)) == {mine.id}
    assert await ids(TicketFilters(unassigned=True)) == {urgent.id, done.id}
    assert await ids(TicketFilters(mailbox_id=box_b.id)) == {mine.id, done.id}
    assert await ids(TicketFilters(category="billing")) == {urgent.id, done.id}


async def test_text_search_covers_subject_customer_and_message_body(
    factory: Factory, session: AsyncSession
) -> None:
    by_subject = await factory.ticket(subject="Refund for order")
    by_customer = await factory.ticket(customer_name="Zoë Wanderer")
    by_address = await factory.ticket(customer_email="accounts@globex-example.org")
    by_body = await factory.ticket(body="My invoice shows 100% VAT_rate twice")
    two_messages = await factory.ticket(subject="Printer", body="first message")
    session.add(
        Message(
            ticket_id=two_messages.id,
            mailbox_id=two_messages.mailbox_id,
            direction="inbound",
            from_address="casey@example.org",
            from_name="Casey",
            to_addresses=[],
            subject="Re: Printer",
            received_at=utcnow(),
            body_text="second message about the toner",
            new_content_text="second message about the toner",
        )
    )
    await session.commit()
    await factory.ticket(subject="Unrelated", body="nothing here")
    closed = await factory.ticket(state=TicketState.DONE, body="a message we answered")

    async def ids(text: str) -> set[int]:
        return {t.id for t in (await tickets.list_tickets(session, TicketFilters(text=text))).items}

    assert await ids("refund") == {by_subject.id}
    assert await ids("wanderer") == {by_customer.id}
    assert await ids("globex") == {by_address.id}
    assert await ids("INVOICE") == {by_body.id}
    assert await ids("toner") == {two_messages.id}  # any message, not only the first
    # the text and the other filters narrow each other
    assert await ids("message") == {two_messages.id, closed.id}
    filtered = TicketFilters(text="message", states=(TicketState.NEW,))
    assert {t.id for t in (await tickets.list_tickets(session, filtered)).items} == {
        two_messages.id
    }
    # LIKE wildcards in the query are matched literally, not as patterns
    assert await ids("100%") == {by_body.id}
    assert await ids("T_r") == {by_body.id}
    assert await ids("%") == {by_body.id}


async def test_pagination_visits_every_ticket_once_in_a_stable_order(
    factory: Factory, session: AsyncSession
) -> None:
    start = utcnow()
    created = [await factory.ticket(created_at=start + timedelta(seconds=i // 2)) for i in range(7)]
    seen: list[int] = []
    cursor = None
    while True:
        page = await tickets.list_tickets(session, TicketFilters(), cursor=cursor, limit=3)
        seen.extend(t.id for t in page.items)
        # a ticket created meanwhile (newer) must not shift later pages
        await factory.ticket(created_at=start + timedelta(hours=1))
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = sorted(created, key=lambda t: (t.created_at, t.id), reverse=True)
    assert seen[: len(created)] == [t.id for t in expected]
    assert len(seen) == len(set(seen))


async def test_a_cursor_from_another_sort_or_garbage_is_refused(
    factory: Factory, session: AsyncSession
) -> None:
    for _ in range(3):
        await factory.ticket()
    page = await tickets.list_tickets(session, TicketFilters(), limit=1)
    assert page.next_cursor is not None
    with pytest.raises(InvalidInputError, match="different sort order"):
        await tickets.list_tickets(
            session, TicketFilters(), sort="updated_at", cursor=page.next_cursor
        )
    for garbage in ("!!!", "bm90IGpzb24", "W10"):
        with pytest.raises(InvalidInputError, match="cursor is not valid"):
            await tickets.list_tickets(session, TicketFilters(), cursor=garbage)
