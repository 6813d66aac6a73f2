"""A worker that dies after drafting but before marking its task done: the successor that takes
the task over once the lease ends does not draft the same customer message again.

Found by the scale-out test (tests/test_scale_out.py): a worker killed with SIGKILL in that
window left one message with two model proposals, the first superseded by the second.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from communication_agent.adapters.offline_model import OfflineReasoningModel
from communication_agent.models import Draft, ModelCall, ReasoningTask, TriageResult
from communication_agent.models.base import utcnow
from communication_agent.services import assistant, reasoning_tasks
from tests.mail import raw_email
from tests.reasoning.support import SessionMaker, config, ingest, support_mailbox, work

OFFLINE = OfflineReasoningModel()


async def test_a_successor_does_not_draft_again_what_a_dead_worker_drafted(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(body="You charged my card twice. Refund one."))
    dead = await reasoning_tasks.claim(sessionmaker, "worker-a", timedelta(minutes=5))
    assert dead is not None
    # worker-a triages and drafts (each step commits), then dies before finishing the task.
    await assistant.triage_ticket(sessionmaker, OFFLINE, config(), dead.ticket_id)
    await assistant.draft_ticket(sessionmaker, OFFLINE, config(), dead.ticket_id)
    async with sessionmaker() as session:  # its lease runs out
        await session.execute(
            update(ReasoningTask).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()

    assert await work(sessionmaker, OFFLINE) == 1  # the successor takes the task over
    async with sessionmaker() as session:
        task = (await session.scalars(select(ReasoningTask))).one()
        assert (task.status, task.attempts) == ("done", 2)
        [draft] = (await session.scalars(select(Draft))).all()
        assert draft.status == "proposed"
        assert len((await session.scalars(select(TriageResult))).all()) == 1
        tasks = list(await session.scalars(select(ModelCall.task)))
        assert sorted(tasks) == ["proposal", "triage"]  # the model was asked once for each
