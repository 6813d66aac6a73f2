"""What `/readyz` and the shared metrics report: the database, the schema, every mailbox's sync.

Readiness answers one question for a load balancer: can this process serve requests? Only the
database and the schema decide that. A mailbox whose sync is failing, must be reconnected or
has not synced for too long makes the answer `degraded`, not unready: one broken Gmail account
must not take every API process out of rotation, while the console and the API keep working
for every other mailbox.

Everything here is read from the database, so every process reports the same shared truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.core import migrations
from communication_agent.core.config import Settings
from communication_agent.core.logging import get_logger
from communication_agent.core.metrics import MailboxFigures, SharedFigures, metrics_server
from communication_agent.models import Mailbox, OutboxEntry, ReasoningTask
from communication_agent.models.base import utcnow
from communication_agent.models.enums import TokenState

log = get_logger(__name__)


class MailboxSyncState(StrEnum):
    OK = "ok"
    PENDING = "pending"  # added, never synced yet, not stale yet
    SYNCING = "syncing"
    FAILING = "failing"
    NEEDS_REAUTH = "needs_reauth"
    STALE = "stale"


DEGRADED = frozenset({MailboxSyncState.FAILING, MailboxSyncState.NEEDS_REAUTH,
                      MailboxSyncState.STALE})  # fmt: skip
OUTBOX_WAITING = ("pending", "sending")
REASONING_STATUSES = ("pending", "running", "failed")


@dataclass(frozen=True)
class MailboxStatus:
    id: int
    name: str
    provider: str
    state: MailboxSyncState
    consecutive_errors: int
    last_error: str | None
    last_success_at: datetime | None
    lag_seconds: float


def classify(mailbox: Mailbox, *, now: datetime, stale_after: timedelta | None) -> MailboxSyncState:
    """One state per mailbox, the most urgent first: reconnecting needs a person, a failing
    sync retries by itself, a running one is progressing, a quiet one may be stuck."""
    if mailbox.token_state == TokenState.NEEDS_REAUTH.value:
        return MailboxSyncState.NEEDS_REAUTH
    if mailbox.consecutive_errors:
        return MailboxSyncState.FAILING
    expires = mailbox.lease_expires_at
    if mailbox.lease_owner is not None and expires is not None and expires > now:
        return MailboxSyncState.SYNCING
    since = mailbox.last_sync_succeeded_at or mailbox.created_at
    if stale_after is not None and now - since > stale_after:
        return MailboxSyncState.STALE
    if mailbox.last_sync_succeeded_at is None:
        return MailboxSyncState.PENDING
    return MailboxSyncState.OK


async def mailbox_statuses(
    session: AsyncSession, *, now: datetime, stale_after: timedelta | None
) -> list[MailboxStatus]:
    """Every active mailbox with its sync state and lag (since it was added, if never synced)."""
    rows = await session.scalars(select(Mailbox).where(Mailbox.is_active).order_by(Mailbox.id))
    return [
        MailboxStatus(
            id=m.id,
            name=m.name,
            provider=m.provider,
            state=classify(m, now=now, stale_after=stale_after),
            consecutive_errors=m.consecutive_errors,
            last_error=m.last_error,
            last_success_at=m.last_sync_succeeded_at,
            lag_seconds=_age(now, m.last_sync_succeeded_at or m.created_at),
        )
        for m in rows
    ]


class SchemaState(StrEnum):
    CURRENT = "current"
    BEHIND = "behind"  # older than this code: run `commagent db upgrade`
    MISSING = "missing"
    UNKNOWN = "unknown_revision"  # migrated by a newer version


class DatabaseState(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Readiness:
    database: DatabaseState
    schema: SchemaState | None = None  # None: not checked (the database did not answer)
    schema_revision: str | None = None
    schema_head: str | None = None
    mailboxes: list[MailboxStatus] | None = None  # None: not checked

    @property
    def ready(self) -> bool:
        return self.database is DatabaseState.OK and self.schema is SchemaState.CURRENT

    @property
    def status(self) -> str:
        if not self.ready:
            return "unready"
        if any(m.state in DEGRADED for m in self.mailboxes or ()):
            return "degraded"
        return "ready"


def _schema_state(status: migrations.SchemaStatus) -> SchemaState:
    if status.is_current:
        return SchemaState.CURRENT
    if status.current is None:
        return SchemaState.MISSING
    return SchemaState.BEHIND if status.known else SchemaState.UNKNOWN


async def readiness(
    engine: AsyncEngine, *, stale_after: timedelta | None, time_limit: float
) -> Readiness:
    """Check the database (`SELECT 1`), the schema, then the mailboxes, all within
    `time_limit` seconds. A failure is logged with its cause and reported as a state, never
    raised."""
    step = "database"
    try:
        async with asyncio.timeout(time_limit):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            step = "schema"
            status = await migrations.schema_status(engine)
            schema = _schema_state(status)
            if schema is not SchemaState.CURRENT:  # the tables may not be what we query
                return Readiness(DatabaseState.OK, schema, status.current, status.head)
            step = "mailboxes"
            async with AsyncSession(engine) as session:
                mailboxes = await mailbox_statuses(session, now=utcnow(), stale_after=stale_after)
    except TimeoutError:
        log.warning("readiness_timeout", step=step, time_limit_seconds=time_limit)
        return Readiness(DatabaseState.TIMEOUT)
    except Exception as exc:  # reported as unready; the cause is in the log
        log.warning("readiness_database_failed", step=step, error=_describe(exc))
        return Readiness(DatabaseState.UNREACHABLE)
    return Readiness(DatabaseState.OK, schema, status.current, status.head, mailboxes)


async def shared_figures(session: AsyncSession, *, stale_after: timedelta | None) -> SharedFigures:
    """The database-derived metrics (see `core.metrics`): mailboxes, outbox, reasoning queue."""
    now = utcnow()
    mailboxes = await mailbox_statuses(session, now=now, stale_after=stale_after)
    outbox = dict.fromkeys(OUTBOX_WAITING, 0)
    outbox.update(
        (
            await session.execute(
                select(OutboxEntry.status, func.count())
                .where(OutboxEntry.status.in_(OUTBOX_WAITING))
                .group_by(OutboxEntry.status)
            )
        ).all()
    )
    oldest = await session.scalar(
        select(func.min(OutboxEntry.created_at)).where(OutboxEntry.status.in_(OUTBOX_WAITING))
    )
    reasoning = dict.fromkeys(REASONING_STATUSES, 0)
    reasoning.update(
        (
            await session.execute(
                select(ReasoningTask.status, func.count())
                .where(ReasoningTask.status.in_(REASONING_STATUSES))
                .group_by(ReasoningTask.status)
            )
        ).all()
    )
    return SharedFigures(
        mailboxes=[
            MailboxFigures(
                m.id, m.name, m.provider, m.state.value, m.lag_seconds, m.consecutive_errors
            )
            for m in mailboxes
        ],
        mailbox_states=tuple(s.value for s in MailboxSyncState),
        outbox=outbox,
        outbox_oldest_pending_age_seconds=_age(now, oldest),
        reasoning=reasoning,
    )


async def read_shared_figures(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    stale_after: timedelta | None,
    time_limit: float,
) -> SharedFigures | None:
    """`shared_figures`, or None when the database does not answer within `time_limit` seconds
    (a scrape then reports `commagent_database_up 0` and the process's own metrics)."""
    try:
        async with asyncio.timeout(time_limit), sessionmaker() as session:
            return await shared_figures(session, stale_after=stale_after)
    except TimeoutError:
        log.warning("metrics_figures_unavailable", error=f"no answer in {time_limit:g} s")
        return None
    except Exception as exc:  # reported as database_up 0; the cause is in the log
        log.warning("metrics_figures_unavailable", error=_describe(exc))
        return None


@contextlib.contextmanager
def serve_metrics(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> Iterator[None]:
    """A background process's metrics on COMMAGENT_METRICS_HOST:COMMAGENT_METRICS_PORT while
    the block runs; nothing when no port is set."""
    if settings.metrics_port is None:
        yield
        return
    figures = functools.partial(
        read_shared_figures,
        sessionmaker,
        stale_after=settings.sync_stale_after,
        time_limit=settings.readyz_timeout_seconds,
    )
    wait = settings.readyz_timeout_seconds + 1  # the figures' own time limit comes first
    with metrics_server(settings.metrics_host, settings.metrics_port, figures, wait=wait):
        yield


def _describe(exc: Exception) -> str:
    """One line for a probe's log: probes repeat every few seconds, a traceback each time
    would bury everything else (and the cause is the same every time)."""
    return f"{type(exc).__name__}: {exc}"[:500]


def _age(now: datetime, since: datetime | None) -> float:
    """Seconds since `since`; SQLite's MIN() returns the stored text, not a datetime."""
    if since is None:
        return 0.0
    if isinstance(since, str):
        since = datetime.fromisoformat(since)
    if since.tzinfo is None:
        since = since.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - since).total_seconds())
