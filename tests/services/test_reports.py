"""Reporting figures against a real database: tickets, drafts and log entries with known times,
and the exact figures they must give."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import ActivityEntry, Draft, Ticket
from communication_agent.models.base import utcnow
from communication_agent.models.enums import ActorType, DraftStatus, Role, TicketState
from communication_agent.services import drafts, reports, tickets
from communication_agent.services.actors import Actor
from communication_agent.services.auth import actor_for_user
from communication_agent.services.errors import InvalidInputError, NotFoundError
from communication_agent.services.report_csv import summary_csv
from tests.factories import Factory

SessionMaker = async_sessionmaker[AsyncSession]
MARCH_1 = datetime(2025, 3, 1, tzinfo=UTC)


async def _stamp(session: AsyncSession, ticket: Ticket, **values: datetime) -> None:
    await session.execute(update(Ticket).where(Ticket.id == ticket.id).values(**values))
    await session.commit()


async def _sent_draft(
    session: AsyncSession,
    ticket: Ticket,
    *,
    sent_at: datetime | None,
    distance: float | None,
    proposed: str | None = "Proposed text",
    status: DraftStatus = DraftStatus.SENT,
    approved_by_id: int | None = None,
) -> None:
    session.add(
        Draft(
            ticket_id=ticket.id,
            status=status.value,
            body="Sent text",
            author="model",
            proposed_body=proposed,
            edit_distance=distance,
            sent_at=sent_at,
            approved_by_id=approved_by_id,
        )
    )
    await session.commit()


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    assert reports.percentile([], 0.5) is None
    assert reports.percentile([7.0], 0.9) == 7.0
    assert reports.percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert reports.percentile([10.0, 20.0, 30.0, 40.0], 1.0) == 40.0
    assert reports.percentile([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], 0.9) == 55.0


def test_an_open_window_is_the_last_30_days() -> None:
    today = date(2025, 3, 31)
    assert reports.resolve_window(None, None, today=today) == (date(2025, 3, 2), today)
    assert reports.resolve_window(None, date(2025, 2, 10), today=today) == (
        date(2025, 1, 12),
        date(2025, 2, 10),
    )
    assert reports.resolve_window(date(2025, 3, 20), None, today=today) == (
        date(2025, 3, 20),
        today,
    )


async def test_volume_is_per_utc_day_zero_filled_by_state_and_category(
    factory: Factory, session: AsyncSession
) -> None:
    await factory.ticket(created_at=MARCH_1 + timedelta(hours=10), category="billing")
    await factory.ticket(
        created_at=MARCH_1 + timedelta(hours=23, minutes=59, seconds=59), state=TicketState.DONE
    )
    await factory.ticket(
        created_at=MARCH_1 + timedelta(days=2),
        category="billing",
        state=TicketState.NEEDS_ACTION,
    )
    await factory.ticket(created_at=MARCH_1 - timedelta(seconds=1), category="bug")  # before
    await factory.ticket(created_at=MARCH_1 + timedelta(days=5), category="bug")  # after

    report = await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 5))

    assert [d.day for d in report.volume] == [date(2025, 3, n) for n in range(1, 6)]
    assert [d.total for d in report.volume] == [2, 0, 1, 0, 0]
    assert report.tickets_created == 3
    assert report.categories == ["billing", "uncategorised"]
    first, second, third = report.volume[:3]
    assert first.by_state == {"NEW": 1, "NEEDS_ACTION": 0, "WAITING_OTHERS": 0, "DONE": 1}
    assert first.by_category == {"billing": 1, "uncategorised": 1}
    assert second.by_state == dict.fromkeys(["NEW", "NEEDS_ACTION", "WAITING_OTHERS", "DONE"], 0)
    assert second.by_category == {"billing": 0, "uncategorised": 0}
    assert third.by_state["NEEDS_ACTION"] == 1
    assert third.by_category == {"billing": 1, "uncategorised": 0}


async def test_days_are_utc_whatever_the_database_session_time_zone(
    factory: Factory, session: AsyncSession
) -> None:
    # 20:00 UTC on 1 March is already 2 March in Auckland (UTC+13).
    await factory.ticket(created_at=MARCH_1 + timedelta(hours=20))
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET TIME ZONE 'Pacific/Auckland'"))
    report = await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 2))
    assert [d.total for d in report.volume] == [1, 0]


async def test_first_response_and_resolution_times_median_and_p90(
    factory: Factory, session: AsyncSession
) -> None:
    for n, seconds in enumerate([600, 60, 1200, 180, 120, 240]):
        created = MARCH_1 + timedelta(hours=n)
        ticket = await factory.ticket(created_at=created)
        await _stamp(session, ticket, first_response_at=created + timedelta(seconds=seconds))
    for n, seconds in enumerate([7200, 3600, 10800]):
        created = MARCH_1 + timedelta(days=1, hours=n)
        ticket = await factory.ticket(created_at=created)
        await _stamp(session, ticket, resolved_at=created + timedelta(seconds=seconds))
    await factory.ticket(created_at=MARCH_1 + timedelta(days=2))  # no response yet
    early = await factory.ticket(created_at=MARCH_1 - timedelta(days=1))  # outside the window
    await _stamp(session, early, first_response_at=MARCH_1 + timedelta(days=9))

    report = await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 31))

    # Sorted 60, 120, 180, 240, 600, 1200: median at rank 2.5, p90 at rank 4.5 (0-based).
    assert report.first_response == reports.DurationStats(
        count=6, median_seconds=210.0, p90_seconds=900.0
    )
    # Sorted 3600, 7200, 10800: median the middle one, p90 at rank 1.8.
    assert report.resolution.count == 3
    assert report.resolution.median_seconds == 7200.0
    assert report.resolution.p90_seconds == 10080.0


async def test_durations_without_data_are_none(session: AsyncSession) -> None:
    report = await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 1))
    empty = reports.DurationStats(count=0, median_seconds=None, p90_seconds=None)
    assert report.first_response == empty
    assert report.resolution == empty
    assert report.operators == []
    assert report.draft_acceptance == reports.DraftAcceptance(0, 0, 0, 0, 0)


async def test_backlog_buckets_open_tickets_by_age_now(
    factory: Factory, session: AsyncSession
) -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    ages_and_states = [
        (timedelta(hours=2), TicketState.NEW),
        (timedelta(days=1), TicketState.NEW),  # exactly a day: the lower bound is included
        (timedelta(days=2), TicketState.NEEDS_ACTION),
        (timedelta(days=5), TicketState.WAITING_OTHERS),
        (timedelta(days=10), TicketState.NEEDS_ACTION),
        (timedelta(days=40), TicketState.NEW),
        (timedelta(days=40), TicketState.DONE),  # closed: not backlog
    ]
    for age, state in ages_and_states:
        await factory.ticket(created_at=now - age, state=state)

    # The backlog is "now", whatever the window.
    report = await reports.summary(session, start=date(2020, 1, 1), end=date(2020, 1, 2), now=now)

    assert [(b.label, b.total) for b in report.backlog] == [
        ("<1 day", 1),
        ("1-3 days", 2),
        ("3-7 days", 1),
        ("7-30 days", 1),
        (">30 days", 1),
    ]
    assert report.backlog[1].by_state == {"NEW": 1, "NEEDS_ACTION": 1, "WAITING_OTHERS": 0}
    assert report.backlog[2].by_state == {"NEW": 0, "NEEDS_ACTION": 0, "WAITING_OTHERS": 1}
    assert report.generated_at == now


async def test_draft_acceptance_buckets_replies_sent_in_the_window(
    factory: Factory, session: AsyncSession
) -> None:
    ticket = await factory.ticket(created_at=MARCH_1)
    during = MARCH_1 + timedelta(days=3)
    for distance in (0.0, 0.05, reports.LIGHT_EDIT_MAX_DISTANCE, 0.21, 0.9):
        await _sent_draft(session, ticket, sent_at=during, distance=distance)
    await _sent_draft(session, ticket, sent_at=during, distance=None, proposed=None)
    await _sent_draft(session, ticket, sent_at=MARCH_1 + timedelta(days=40), distance=0.0)
    await _sent_draft(
        session, ticket, sent_at=None, distance=0.0, status=DraftStatus.APPROVED
    )  # approved, not sent yet

    report = await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 31))

    assert report.draft_acceptance == reports.DraftAcceptance(
        sent=6, unchanged=1, lightly_edited=2, rewritten=2, human_written=1
    )


async def _operator(factory: Factory, email: str) -> Actor:
    return actor_for_user((await factory.principal(Role.OPERATOR, email=email)).user)


async def test_per_operator_activity_counts_each_users_actions_in_the_window(
    factory: Factory, sessionmaker: SessionMaker, session: AsyncSession
) -> None:
    ana = await _operator(factory, "ana@staff.example.com")
    bo = await _operator(factory, "bo@staff.example.com")
    assert ana.user_id is not None
    assert bo.user_id is not None
    ticket = await factory.ticket()
    other = await factory.ticket()
    async with sessionmaker() as s:
        await tickets.change_state(
            s, ana, ticket.id, target=TicketState.NEEDS_ACTION, expected_version=1
        )
        await tickets.change_state(s, bo, other.id, target=TicketState.DONE, expected_version=1)
        await tickets.assign(s, ana, ticket.id, assignee_id=bo.user_id)
        await tickets.assign(s, ana, other.id, assignee_id=ana.user_id)
        await tickets.add_note(s, bo, ticket.id, body="Called the customer.")
        draft = await drafts.create(s, bo, ticket.id, "Hello, first try")
        draft = await drafts.edit(s, bo, draft.id, body="Hello, second try", expected_version=1)
        await drafts.approve(
            s, ana, draft.id, expected_version=draft.version, rules=drafts.ApprovalRules()
        )
        system = Actor.system("triage")
        await tickets.change_state(s, system, other.id, target=TicketState.NEEDS_ACTION,
                                   expected_version=3)  # fmt: skip
    await session.execute(
        update(Draft)
        .where(Draft.id == draft.id)
        .values(status=DraftStatus.SENT.value, sent_at=utcnow())
    )
    session.add(  # ana's note of last week: outside the window
        ActivityEntry(ticket_id=ticket.id, actor_type=ActorType.USER.value,
                      actor_user_id=ana.user_id, actor_name=ana.name, action="note.added",
                      created_at=utcnow() - timedelta(days=7))
    )  # fmt: skip
    await session.commit()

    today = utcnow().date()
    report = await reports.summary(
        session, start=today - timedelta(days=1), end=today + timedelta(days=1)
    )

    assert [(o.email, o.user_id) for o in report.operators] == [
        ("ana@staff.example.com", ana.user_id),
        ("bo@staff.example.com", bo.user_id),
    ]
    assert report.operators[0] == reports.OperatorActivity(
        user_id=ana.user_id, email="ana@staff.example.com", display_name="",
        approvals=1, replies_sent=1, state_changes=1, assignments=2,
    )  # fmt: skip
    assert report.operators[1] == reports.OperatorActivity(
        user_id=bo.user_id, email="bo@staff.example.com", display_name="",
        edits=1, drafts_written=1, state_changes=1, notes=1,
    )  # fmt: skip

    # One mailbox: only what happened on that mailbox's tickets.
    only_other = await reports.summary(
        session,
        start=today - timedelta(days=1),
        end=today + timedelta(days=1),
        mailbox_id=other.mailbox_id,
    )
    assert [
        (o.email, o.state_changes, o.assignments, o.approvals) for o in only_other.operators
    ] == [
        ("ana@staff.example.com", 0, 1, 0),
        ("bo@staff.example.com", 1, 0, 0),
    ]
    assert only_other.tickets_created == 1


async def test_a_mailbox_report_counts_only_that_mailboxs_tickets(
    factory: Factory, session: AsyncSession
) -> None:
    mine = await factory.mailbox()
    theirs = await factory.mailbox()
    await factory.ticket(mailbox=mine, created_at=MARCH_1)
    await factory.ticket(mailbox=theirs, created_at=MARCH_1)
    await factory.ticket(mailbox=theirs, created_at=MARCH_1)
    report = await reports.summary(
        session, start=date(2025, 3, 1), end=date(2025, 3, 1), mailbox_id=mine.id
    )
    assert report.tickets_created == 1
    assert report.mailbox_id == mine.id
    assert sum(b.total for b in report.backlog) == 1


async def test_an_unknown_mailbox_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFoundError, match="Mailbox 999 does not exist"):
        await reports.summary(session, start=date(2025, 3, 1), end=date(2025, 3, 1), mailbox_id=999)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (date(2025, 3, 2), date(2025, 3, 1), r"ends \(2025-03-01\) before it starts \(2025-03-02\)"),
        (date(2024, 1, 1), date(2025, 1, 1), r"spans 367 days; it can span at most 366: move the start to 2024-01-02"),
        (date(9999, 12, 1), date.max, "must end before 9999-12-31"),
    ],
)  # fmt: skip
async def test_a_bad_window_says_what_to_fix(
    session: AsyncSession, start: date, end: date, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await reports.summary(session, start=start, end=end)


async def test_the_longest_window_is_366_days(session: AsyncSession) -> None:
    report = await reports.summary(session, start=date(2024, 1, 1), end=date(2024, 12, 31))
    assert len(report.volume) == 366
    assert report.tickets_created == 0


async def test_the_csv_has_one_row_per_figure(factory: Factory, session: AsyncSession) -> None:
    ticket = await factory.ticket(created_at=MARCH_1, category="=HYPERLINK(1)")
    await _stamp(session, ticket, first_response_at=MARCH_1 + timedelta(seconds=90))
    report = await reports.summary(
        session, start=date(2025, 3, 1), end=date(2025, 3, 2), now=MARCH_1 + timedelta(hours=1)
    )

    lines = summary_csv(report).split("\r\n")

    assert lines[0] == "section,key,subkey,value"
    assert lines[1:5] == [
        "window,start,,2025-03-01",
        "window,end,,2025-03-02",
        "window,mailbox_id,,",
        "window,generated_at,,2025-03-01T01:00:00+00:00",
    ]
    assert "volume,2025-03-01,total,1" in lines
    assert "volume,2025-03-02,total,0" in lines
    assert "volume_by_state,2025-03-01,NEW,1" in lines
    # A category a spreadsheet would run as a formula stays text.
    assert "volume_by_category,2025-03-01,'=HYPERLINK(1),1" in lines
    assert "first_response,count,,1" in lines
    assert "first_response,median_seconds,,90.0" in lines
    assert "resolution,median_seconds,," in lines
    assert "backlog,<1 day,total,1" in lines
    assert "draft_acceptance,sent,,0" in lines
    assert lines[-1] == ""  # ends with a line break


async def test_a_mailbox_without_tickets_reports_zeros(
    factory: Factory, session: AsyncSession
) -> None:
    mailbox = await factory.mailbox()
    await factory.ticket(created_at=MARCH_1)  # in another mailbox
    report = await reports.summary(
        session, start=date(2025, 3, 1), end=date(2025, 3, 1), mailbox_id=mailbox.id
    )
    assert report.tickets_created == 0
    assert [b.total for b in report.backlog] == [0, 0, 0, 0, 0]
