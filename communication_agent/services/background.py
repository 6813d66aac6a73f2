"""Background sync: every active mailbox, every interval, in any number of processes.

The same `sync_mailbox` the API and CLI call; the mailbox lease makes concurrent workers safe
(one syncs, the others skip it this round). A mailbox whose syncs keep failing is retried with
exponential backoff (capped), and is back to the normal interval after its next success.
Mailboxes that must be reconnected are skipped until someone reconnects them.

`run_rounds` is the loop every background job shares (sync here, triage and drafting in
`reasoning_tasks`, sending in `sending`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.mail_provider import ProviderOpener
from communication_agent.core.logging import get_logger
from communication_agent.models import Mailbox
from communication_agent.models.base import utcnow
from communication_agent.models.enums import TokenState
from communication_agent.services import sync
from communication_agent.services.errors import DomainError

log = get_logger(__name__)
MAX_BACKOFF = timedelta(hours=1)


def backoff(interval: float, consecutive_errors: int) -> timedelta:
    """How long a failing mailbox waits: the interval doubled per consecutive failure, capped."""
    return min(timedelta(seconds=interval * 2 ** min(consecutive_errors, 20)), MAX_BACKOFF)


async def due_mailboxes(
    sessionmaker: async_sessionmaker[AsyncSession], interval: float
) -> list[int]:
    now = utcnow()
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(Mailbox)
                .where(Mailbox.is_active, Mailbox.token_state != TokenState.NEEDS_REAUTH.value)
                .order_by(Mailbox.id)
            )
        ).all()
    due = []
    for mailbox in rows:
        started = mailbox.last_sync_started_at
        if (
            mailbox.consecutive_errors
            and started
            and now < started + backoff(interval, mailbox.consecutive_errors)
        ):
            continue
        due.append(mailbox.id)
    return due


async def sync_due_mailboxes(
    sessionmaker: async_sessionmaker[AsyncSession],
    opener: ProviderOpener,
    *,
    owner: str,
    interval: float,
    lease: timedelta = sync.DEFAULT_LEASE,
) -> int:
    """One round: sync what is due; returns how many mailboxes this process synced."""
    synced = 0
    for mailbox_id in await due_mailboxes(sessionmaker, interval):
        try:
            counts = await sync.sync_mailbox(
                sessionmaker, mailbox_id, opener, owner=owner, lease=lease
            )
        except sync.SyncInProgressError:
            continue  # another process has it
        except DomainError as exc:  # recorded on the mailbox by the sync itself
            log.warning("background_sync_failed", mailbox_id=mailbox_id, error=exc.message)
            continue
        except Exception:  # one mailbox's fault must not starve the others this round
            log.exception("background_sync_crashed", mailbox_id=mailbox_id)
            continue
        synced += 1
        if counts.new_messages or counts.errors or counts.quarantined:
            log.info("background_sync", mailbox_id=mailbox_id, **counts.as_dict())
    return synced


async def run_rounds(
    name: str,
    one_round: Callable[[], Awaitable[object]],
    *,
    owner: str,
    interval: float,
    stop: asyncio.Event,
    full_round: int | None = None,
    **started: object,
) -> None:
    """Rounds of `one_round` until `stop` is set, `interval` seconds apart: the shape of every
    background loop (sync, triage and drafting, sending). A round that fails unexpectedly is
    logged, not fatal: a database outage must not end the loop for good.

    A round that returns `full_round` or more (it stopped at its batch limit, so more work is
    probably waiting) is followed at once: with a backlog, pausing after every batch capped a
    sender at 25 replies a second whatever the provider could take.
    """
    log.info(f"{name}_loop_started", owner=owner, **started)
    while not stop.is_set():
        done: object = 0
        try:
            done = await one_round()
        except Exception:
            log.exception(f"{name}_round_failed", owner=owner)
        if full_round is not None and type(done) is int and done >= full_round:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    log.info(f"{name}_loop_stopped", owner=owner)


async def run_sync_loop(
    sessionmaker: async_sessionmaker[AsyncSession],
    opener: ProviderOpener,
    *,
    owner: str,
    interval: float,
    stop: asyncio.Event,
    lease: timedelta = sync.DEFAULT_LEASE,
) -> None:
    """Sync rounds until `stop` is set (see `run_rounds`)."""

    async def one_round() -> int:
        return await sync_due_mailboxes(
            sessionmaker, opener, owner=owner, interval=interval, lease=lease
        )

    await run_rounds(
        "sync", one_round, owner=owner, interval=interval, stop=stop, interval_seconds=interval
    )
