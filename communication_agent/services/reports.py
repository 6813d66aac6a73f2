"""Reporting figures for the operator console: volume, response and resolution times, backlog,
how much operators change the model's drafts, and who did what.

Every figure is aggregated in the database (one GROUP BY per figure, over a window of at most
`MAX_WINDOW_DAYS` days), so counts cross the wire, not rows. The one exception is the durations
behind the percentiles: those are read as two timestamps per ticket created in the window and
ranked here, because SQLite has no percentile function (about a second for a year of 100,000
tickets; see the README).

Days are UTC days on both engines. Expressions that carry bound parameters (the UTC day on
PostgreSQL, the bucket labels) are grouped in an outer query over a subquery, since PostgreSQL
cannot tell that two bound parameters in SELECT and GROUP BY are the same expression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Date, Select, and_, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import ActivityEntry, Draft, Mailbox, Ticket, User
from communication_agent.models.base import utcnow
from communication_agent.models.enums import DraftStatus, TicketState
from communication_agent.services.errors import InvalidInputError, NotFoundError

MAX_WINDOW_DAYS = 366
DEFAULT_WINDOW_DAYS = 30
UNCATEGORISED = "uncategorised"

# Draft acceptance: `Draft.edit_distance` runs from 0 (sent as proposed) to 1 (nothing left).
UNCHANGED_MAX_DISTANCE = 0.0
LIGHT_EDIT_MAX_DISTANCE = 0.2

# Backlog age buckets: (label, ages below this bound); the last bucket has no bound.
BACKLOG_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1 day", timedelta(days=1)),
    ("1-3 days", timedelta(days=3)),
    ("3-7 days", timedelta(days=7)),
    ("7-30 days", timedelta(days=30)),
    (">30 days", None),
)
OPEN_STATES = tuple(s.value for s in TicketState if s is not TicketState.DONE)

# Per-operator figures: the activity-log actions each one counts. `replies_sent` comes from
# the drafts instead: the sender logs `reply.sent` as `system:sender`, so the reply is
# credited to the operator who approved it.
OPERATOR_ACTIONS: dict[str, str] = {
    "draft.approved": "approvals",
    "draft.edited": "edits",
    "draft.created": "drafts_written",
    "draft.discarded": "discards",
    "ticket.state_changed": "state_changes",
    "note.added": "notes",
    "ticket.assigned": "assignments",
}
# The figures of `OperatorActivity`, in display order (table columns, CSV rows).
OPERATOR_FIGURES = (
    "approvals",
    "replies_sent",
    "edits",
    "drafts_written",
    "discards",
    "state_changes",
    "notes",
    "assignments",
)


@dataclass(frozen=True)
class DayVolume:
    """Tickets created on one UTC day, by their current state and category (both zero-filled
    with every state and every category of the window, so each day has the same keys)."""

    day: date
    total: int
    by_state: dict[str, int]
    by_category: dict[str, int]


@dataclass(frozen=True)
class DurationStats:
    """Durations in seconds; median and p90 by linear interpolation (see `percentile`)."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class BacklogBucket:
    label: str
    total: int
    by_state: dict[str, int]  # every open state, zero-filled


@dataclass(frozen=True)
class DraftAcceptance:
    """Replies sent in the window, by how far the sent text is from the model's proposal."""

    sent: int
    unchanged: int
    lightly_edited: int
    rewritten: int
    human_written: int  # no model proposal to compare with


@dataclass(frozen=True)
class OperatorActivity:
    user_id: int
    email: str
    display_name: str
    approvals: int = 0
    replies_sent: int = 0
    edits: int = 0
    drafts_written: int = 0
    discards: int = 0
    state_changes: int = 0
    notes: int = 0
    assignments: int = 0


@dataclass(frozen=True)
class ReportSummary:
    start: date
    end: date
    mailbox_id: int | None
    generated_at: datetime
    tickets_created: int
    states: list[str]
    categories: list[str]
    volume: list[DayVolume]
    first_response: DurationStats
    resolution: DurationStats
    backlog: list[BacklogBucket]
    draft_acceptance: DraftAcceptance
    operators: list[OperatorActivity]


def resolve_window(
    start: date | None, end: date | None, *, today: date | None = None
) -> tuple[date, date]:
    """Fill in a window left open: the end defaults to today (UTC), the start to
    `DEFAULT_WINDOW_DAYS` days ending on the end."""
    end = end or today or utcnow().date()
    return start or end - timedelta(days=DEFAULT_WINDOW_DAYS - 1), end


def validate_window(start: date, end: date) -> None:
    if end < start:
        raise InvalidInputError(
            f"The report window ends ({end}) before it starts ({start}); "
            "choose an end on or after the start.",
            start=start.isoformat(),
            end=end.isoformat(),
        )
    days = (end - start).days + 1
    if days > MAX_WINDOW_DAYS:
        raise InvalidInputError(
            f"The report window spans {days} days; it can span at most {MAX_WINDOW_DAYS}: "
            f"move the start to {end - timedelta(days=MAX_WINDOW_DAYS - 1)} or later.",
            days=days,
            max_days=MAX_WINDOW_DAYS,
        )
    if end == date.max:
        raise InvalidInputError(f"The report window must end before {date.max}.")


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, the spreadsheet
    PERCENTILE.INC): position `(n - 1) * fraction` in the sorted values. So the median of an
    even count is the mean of the two middle values. None without data."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def duration_stats(seconds: Sequence[float]) -> DurationStats:
    ordered = sorted(seconds)
    return DurationStats(
        count=len(ordered),
        median_seconds=percentile(ordered, 0.5),
        p90_seconds=percentile(ordered, 0.9),
    )


async def summary(
    session: AsyncSession,
    *,
    start: date,
    end: date,
    mailbox_id: int | None = None,
    now: datetime | None = None,
) -> ReportSummary:
    """Every figure for the UTC days `start` to `end` inclusive, optionally for one mailbox.

    Volume, response and resolution times cover tickets *created* in the window (by their
    current state); acceptance covers replies *sent* in it; operator counts cover log entries
    *written* in it. The backlog is the open tickets at `now` (default: the current time),
    whatever the window.
    """
    validate_window(start, end)
    if mailbox_id is not None and await session.get(Mailbox, mailbox_id) is None:
        raise NotFoundError(f"Mailbox {mailbox_id} does not exist.", mailbox_id=mailbox_id)
    now = now or utcnow()
    window = _Window(start, end, mailbox_id)
    volume, categories = await _volume(session, window)
    return ReportSummary(
        start=start,
        end=end,
        mailbox_id=mailbox_id,
        generated_at=now,
        tickets_created=sum(day.total for day in volume),
        states=[s.value for s in TicketState],
        categories=categories,
        volume=volume,
        first_response=await _durations(session, window, Ticket.first_response_at),
        resolution=await _durations(session, window, Ticket.resolved_at),
        backlog=await _backlog(session, mailbox_id, now),
        draft_acceptance=await _acceptance(session, window),
        operators=await _operators(session, window),
    )


@dataclass(frozen=True)
class _Window:
    start: date
    end: date
    mailbox_id: int | None

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)

    def covers(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.since, column < self.until)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


Ts = TypeVarTuple("Ts")


def _for_mailbox(query: Select[*Ts], mailbox_id: int | None) -> Select[*Ts]:
    return query if mailbox_id is None else query.where(Ticket.mailbox_id == mailbox_id)


def _utc_day(session: AsyncSession, column: Any) -> ColumnElement[date]:
    """The UTC calendar day of a timestamp. PostgreSQL converts `timestamptz` to a date in the
    session's time zone, so it is shifted to UTC first; SQLite stores UTC text already."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column, type_=Date)


async def _counts(session: AsyncSession, inner: Select[*Ts]) -> list[Any]:
    """`inner`'s rows counted per distinct row (see the module docstring for why nested)."""
    grouped = inner.subquery()
    columns = list(grouped.c)
    return list(await session.execute(select(*columns, func.count()).group_by(*columns)))


async def _volume(session: AsyncSession, window: _Window) -> tuple[list[DayVolume], list[str]]:
    day = _utc_day(session, Ticket.created_at).label("day")
    category = func.coalesce(Ticket.category, UNCATEGORISED).label("category")
    inner = select(day, Ticket.state, category).where(window.covers(Ticket.created_at))
    rows = await _counts(session, _for_mailbox(inner, window.mailbox_id))
    categories = sorted({row.category for row in rows})
    states = [s.value for s in TicketState]
    counts: dict[date, tuple[dict[str, int], dict[str, int]]] = {
        d: (dict.fromkeys(states, 0), dict.fromkeys(categories, 0)) for d in window.days()
    }
    for row_day, state, row_category, count in rows:
        by_state, by_category = counts[_as_date(row_day)]
        by_state[state] = by_state.get(state, 0) + count
        by_category[row_category] += count
    volume = [
        DayVolume(day=d, total=sum(s.values()), by_state=s, by_category=c)
        for d, (s, c) in counts.items()
    ]
    return volume, categories


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


async def _durations(session: AsyncSession, window: _Window, until: Any) -> DurationStats:
    """From creation to `until` for tickets created in the window that have it. A response
    stamped before the ticket's creation (history imported later) counts as zero."""
    query = select(Ticket.created_at, until).where(
        window.covers(Ticket.created_at), until.is_not(None)
    )
    rows = await session.execute(_for_mailbox(query, window.mailbox_id))
    return duration_stats([max(0.0, (end - begin).total_seconds()) for begin, end in rows])


async def _backlog(
    session: AsyncSession, mailbox_id: int | None, now: datetime
) -> list[BacklogBucket]:
    bounded = [(label, bound) for label, bound in BACKLOG_BUCKETS if bound is not None]
    last_label = BACKLOG_BUCKETS[-1][0]
    bucket = case(
        *[(Ticket.created_at > now - bound, label) for label, bound in bounded],
        else_=last_label,
    ).label("bucket")
    inner = select(bucket, Ticket.state).where(Ticket.state.in_(OPEN_STATES))
    rows = await _counts(session, _for_mailbox(inner, mailbox_id))
    by_bucket = {label: dict.fromkeys(OPEN_STATES, 0) for label, _ in BACKLOG_BUCKETS}
    for label, state, count in rows:
        by_bucket[label][state] = count
    return [
        BacklogBucket(label=label, total=sum(states.values()), by_state=states)
        for label, states in by_bucket.items()
    ]


async def _acceptance(session: AsyncSession, window: _Window) -> DraftAcceptance:
    bucket = case(
        (or_(Draft.proposed_body.is_(None), Draft.edit_distance.is_(None)), "human_written"),
        (Draft.edit_distance <= UNCHANGED_MAX_DISTANCE, "unchanged"),
        (Draft.edit_distance <= LIGHT_EDIT_MAX_DISTANCE, "lightly_edited"),
        else_="rewritten",
    ).label("bucket")
    inner = (
        select(bucket)
        .join(Ticket, Ticket.id == Draft.ticket_id)
        .where(Draft.status == DraftStatus.SENT.value, window.covers(Draft.sent_at))
    )
    counts = dict.fromkeys(("unchanged", "lightly_edited", "rewritten", "human_written"), 0)
    for label, count in await _counts(session, _for_mailbox(inner, window.mailbox_id)):
        counts[label] = count
    return DraftAcceptance(sent=sum(counts.values()), **counts)


async def _operators(session: AsyncSession, window: _Window) -> list[OperatorActivity]:
    """Per user, over their sign-ins and tokens alike; users with nothing in the window are
    left out. Ordered by email."""
    figures = await _operator_counts(session, window)
    if not figures:
        return []
    users = await session.execute(
        select(User.id, User.email, User.display_name)
        .where(User.id.in_(list(figures)))
        .order_by(User.email)
    )
    return [
        OperatorActivity(user_id=uid, email=email, display_name=name, **figures[uid])
        for uid, email, name in users
    ]


async def _operator_counts(
    session: AsyncSession, window: _Window
) -> dict[int | None, dict[str, int]]:
    """User id -> figure -> count (the WHERE clauses keep the id from being None)."""
    logged = (
        select(ActivityEntry.actor_user_id, ActivityEntry.action, func.count())
        .where(
            window.covers(ActivityEntry.created_at),
            ActivityEntry.actor_user_id.is_not(None),
            ActivityEntry.action.in_(list(OPERATOR_ACTIONS)),
        )
        .group_by(ActivityEntry.actor_user_id, ActivityEntry.action)
    )
    if window.mailbox_id is not None:
        logged = logged.join(Ticket, Ticket.id == ActivityEntry.ticket_id)
    sent = (
        select(Draft.approved_by_id, func.count())
        .join(Ticket, Ticket.id == Draft.ticket_id)
        .where(
            Draft.status == DraftStatus.SENT.value,
            window.covers(Draft.sent_at),
            Draft.approved_by_id.is_not(None),
        )
        .group_by(Draft.approved_by_id)
    )
    figures: dict[int | None, dict[str, int]] = {}
    for user_id, action, count in await session.execute(_for_mailbox(logged, window.mailbox_id)):
        figures.setdefault(user_id, {})[OPERATOR_ACTIONS[action]] = count
    for user_id, count in await session.execute(_for_mailbox(sent, window.mailbox_id)):
        figures.setdefault(user_id, {})["replies_sent"] = count
    return figures
