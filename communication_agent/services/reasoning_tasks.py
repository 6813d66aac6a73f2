"""The reasoning work queue: triage, route and draft new customer mail in the background.

Ingestion queues a task in the transaction that stores a customer message, so no message is
forgotten and the sync never waits for a model. Any process (`serve`, `commagent worker`)
claims due tasks under a lease: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, on SQLite inside
its single-writer transaction, so two workers never take the same task, and a dead worker's task
is taken again once its lease ends. A model outage fails the attempt, not the task: it is retried
with growing delays, and marked `failed` with its reason after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.core.db import begin_write
from communication_agent.core.logging import get_logger
from communication_agent.models import Draft, Message, ReasoningTask, Ticket, TriageResult
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, TicketState
from communication_agent.services import assistant, work_queue
from communication_agent.services.assistant import AssistantConfig, ModelFailedError
from communication_agent.services.background import run_rounds
from communication_agent.services.errors import DomainError

log = get_logger(__name__)
REASONING_BATCH = 50  # tasks a round; a full round is followed at once (see run_rounds)
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
SessionMaker = async_sessionmaker[AsyncSession]


def retry_delay(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(delay, MAX_RETRY)


@dataclass(frozen=True)
class Claimed:
    id: int
    ticket_id: int
    attempts: int
    owner: str
    lease: timedelta


async def claim(sessionmaker: SessionMaker, owner: str, lease: timedelta) -> Claimed | None:
    """Take the oldest due task, or None. Other pending tasks of its ticket are folded into it:
    the work always looks at the ticket's newest message, so they would repeat it."""

    def due(now: datetime) -> ColumnElement[bool]:
        return or_(
            (ReasoningTask.status == PENDING) & (ReasoningTask.next_attempt_at <= now),
            (ReasoningTask.status == RUNNING) & (ReasoningTask.lease_expires_at < now),
        )

    async def fold(session: AsyncSession, task: ReasoningTask) -> Claimed:
        await session.execute(
            update(ReasoningTask)
            .where(
                ReasoningTask.ticket_id == task.ticket_id,
                ReasoningTask.status == PENDING,
                ReasoningTask.id != task.id,
            )
            .values(status=DONE, last_error=f"folded into task {task.id}", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return Claimed(task.id, task.ticket_id, task.attempts, owner, lease)

    return await work_queue.claim_oldest(
        sessionmaker, ReasoningTask, due, running=RUNNING, owner=owner, lease=lease, claimed=fold
    )


async def process(
    sessionmaker: SessionMaker, model: ReasoningModel, config: AssistantConfig, task: Claimed
) -> None:
    """Triage (unless the newest message already has one), route, then draft if a reply is
    needed. A failure goes back to the queue with a delay. Every log line of the work carries
    the ticket id."""
    with structlog.contextvars.bound_contextvars(ticket_id=task.ticket_id, task_id=task.id):
        await _process(sessionmaker, model, config, task)


async def _process(
    sessionmaker: SessionMaker, model: ReasoningModel, config: AssistantConfig, task: Claimed
) -> None:
    drafted = False
    try:
        needs_draft = await _triage_if_needed(sessionmaker, model, config, task.ticket_id)
        if needs_draft and await _renew(sessionmaker, task):
            await assistant.draft_ticket(sessionmaker, model, config, task.ticket_id)
            drafted = True
    except (ModelFailedError, DomainError) as exc:
        await _finish(sessionmaker, task, error=exc.message)
        log.warning("reasoning_failed", attempts=task.attempts, error_code=exc.code)
        return
    except Exception as exc:  # recorded on the task; the queue goes on
        log.exception("reasoning_crashed")
        await _finish(sessionmaker, task, error=f"unexpected error ({type(exc).__name__})")
        return
    await _finish(sessionmaker, task, error=None)
    log.info("reasoning_done", provider=model.provider, drafted=drafted)


async def _triage_if_needed(
    sessionmaker: SessionMaker, model: ReasoningModel, config: AssistantConfig, ticket_id: int
) -> bool:
    """Triage the newest customer message unless done; True when a draft is wanted: the
    customer needs a reply, the ticket is open, nobody has answered that message yet (a reply
    of ours synced in the same batch, or sent from the mailbox directly), and it has no
    proposal yet (a worker that drafted it died before it could mark its task done)."""
    async with sessionmaker() as session:
        newest = (
            await session.execute(
                select(Message.id, Message.received_at)
                .where(
                    Message.ticket_id == ticket_id,
                    Message.direction == Direction.INBOUND.value,
                    Message.is_automated.is_(False),
                )
                .order_by(Message.id.desc())
                .limit(1)
            )
        ).first()
        if newest is None:
            return False
        latest, asked_at = newest
        answered = await session.scalar(
            select(
                exists().where(
                    Message.ticket_id == ticket_id,
                    Message.direction == Direction.OUTBOUND.value,
                    Message.received_at > asked_at,
                )
                | exists().where(Draft.ticket_id == ticket_id, Draft.source_message_id == latest)
            )
        )
        done = await session.scalar(
            select(TriageResult)
            .where(TriageResult.ticket_id == ticket_id, TriageResult.message_id == latest)
            .order_by(TriageResult.id.desc())
            .limit(1)
        )
        ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        return False
    if done is None:
        outcome = await assistant.triage_ticket(sessionmaker, model, config, ticket_id)
        done, state = outcome.result, outcome.routed_to or TicketState(ticket.state)
    else:
        state = TicketState(ticket.state)
    wanted = done.needs_reply and done.category != "spam" and state is not TicketState.DONE
    return wanted and not answered


async def _renew(sessionmaker: SessionMaker, task: Claimed) -> bool:
    """Extend our lease between steps; False when it ran out and another worker took over (it
    then does the rest, so we stop)."""
    async with sessionmaker() as session:
        await begin_write(session)
        renewed = await session.execute(
            update(ReasoningTask)
            .where(ReasoningTask.id == task.id, ReasoningTask.lease_owner == task.owner)
            .values(lease_expires_at=utcnow() + task.lease)
        )
        await session.commit()
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


async def _finish(sessionmaker: SessionMaker, task: Claimed, *, error: str | None) -> None:
    now = utcnow()
    values: dict[str, object]
    if error is None:
        values = {"status": DONE, "last_error": None}
    elif task.attempts >= MAX_ATTEMPTS:
        values = {"status": FAILED, "last_error": error}
    else:
        values = {
            "status": PENDING,
            "last_error": error,
            "next_attempt_at": now + retry_delay(task.attempts),
        }
    async with sessionmaker() as session:
        await begin_write(session)
        await session.execute(  # only while it is still ours: a takeover's outcome stands
            update(ReasoningTask)
            .where(ReasoningTask.id == task.id, ReasoningTask.lease_owner == task.owner)
            .values(**values, lease_owner=None, lease_expires_at=None, updated_at=now)
        )
        await session.commit()


async def run_due(
    sessionmaker: SessionMaker,
    model: ReasoningModel,
    config: AssistantConfig,
    *,
    owner: str,
    lease: timedelta,
    limit: int = REASONING_BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    """Work through due tasks (at most `limit`, and none once `stop` is set); returns how many
    were processed."""
    processed = 0
    while processed < limit and not (stop and stop.is_set()):
        task = await claim(sessionmaker, owner, lease)
        if task is None:
            break
        await process(sessionmaker, model, config, task)
        processed += 1
    return processed


async def run_loop(
    sessionmaker: SessionMaker,
    model: ReasoningModel,
    config: AssistantConfig,
    *,
    owner: str,
    interval: float,
    lease: timedelta,
    stop: asyncio.Event,
) -> None:
    """Rounds of `run_due` until `stop` is set (see `background.run_rounds`)."""

    async def one_round() -> int:
        return await run_due(sessionmaker, model, config, owner=owner, lease=lease, stop=stop)

    await run_rounds(
        "reasoning",
        one_round,
        owner=owner,
        interval=interval,
        stop=stop,
        full_round=REASONING_BATCH,
        provider=model.provider,
    )
