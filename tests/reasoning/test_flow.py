"""New customer mail is triaged, routed and drafted in the background, outside the sync."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from communication_agent.adapters.offline_model import OfflineReasoningModel
from communication_agent.models import (
    ActivityEntry,
    Draft,
    Message,
    ModelCall,
    ReasoningTask,
    Ticket,
    TriageResult,
)
from communication_agent.models.base import utcnow
from communication_agent.models.enums import DraftStatus, TicketState
from communication_agent.services import reasoning_tasks
from tests.llm_servers import Fault, OpenAITestServer
from tests.mail import raw_email
from tests.reasoning.support import (
    SessionMaker,
    benign,
    config,
    ingest,
    openai_model,
    support_mailbox,
    work,
)

OFFLINE = OfflineReasoningModel()


async def _only_ticket(sessionmaker: SessionMaker) -> Ticket:
    async with sessionmaker() as session:
        [ticket] = (await session.scalars(select(Ticket))).all()
        return ticket


async def test_new_mail_is_queued_then_triaged_routed_and_drafted(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(
            subject="Charged twice",
            body="Hi, you charged my card twice for the subscription. Please refund one.",
        ),
    )
    ticket = await _only_ticket(sessionmaker)
    assert ticket.state == TicketState.NEW.value  # ingestion only queues the work
    async with sessionmaker() as session:
        [task] = (await session.scalars(select(ReasoningTask))).all()
        assert (task.ticket_id, task.status) == (ticket.id, "pending")

    assert await work(sessionmaker, OFFLINE) == 1
    async with sessionmaker() as session:
        ticket = await session.get_one(Ticket, ticket.id)
        assert (ticket.state, ticket.category, ticket.priority) == (
            "NEEDS_ACTION",
            "billing",
            "high",
        )
        [triage] = (await session.scalars(select(TriageResult))).all()
        [draft] = (await session.scalars(select(Draft))).all()
        message_id = await session.scalar(select(Message.id))
        assert draft.status == DraftStatus.PROPOSED.value
        assert draft.citations[0] == f"message:{message_id}"
        assert draft.plan
        assert all(step["reason"] for step in draft.plan)
        assert "Casey" in draft.body
        moved = await session.scalar(
            select(ActivityEntry).where(ActivityEntry.action == "ticket.state_changed")
        )
        assert moved is not None
        assert moved.actor_name == "system:triage"
        assert "confidence" in moved.details["reason"]
        assert triage.routing == moved.details["reason"]
        calls = (await session.scalars(select(ModelCall).order_by(ModelCall.id))).all()
        assert [(c.task, c.provider, c.outcome) for c in calls] == [
            ("triage", "offline", "ok"),
            ("proposal", "offline", "ok"),
        ]
        assert (await session.get_one(ReasoningTask, task.id)).status == "done"
        logged = set(await session.scalars(select(ActivityEntry.action)))
        assert {"triage.completed", "draft.proposed"} <= logged


async def test_a_plain_thank_you_is_closed_by_triage_and_not_drafted(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(subject="Re: login", body="Thanks, that worked!"))
    await work(sessionmaker, OFFLINE)
    ticket = await _only_ticket(sessionmaker)
    assert ticket.state == TicketState.DONE.value
    async with sessionmaker() as session:
        assert (await session.scalars(select(Draft))).all() == []
        reason = await session.scalar(
            select(ActivityEntry.details).where(ActivityEntry.action == "ticket.state_changed")
        )
        assert reason is not None
        assert reason["reason"].startswith("no reply needed (confidence")


async def test_spam_is_tagged_and_closed_but_kept(sessionmaker: SessionMaker) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(
            subject="Rank your website on the first page of Google",
            body="Cheap backlinks and guest post offers. Click here for our SEO packages.",
        ),
    )
    await work(sessionmaker, OFFLINE)
    ticket = await _only_ticket(sessionmaker)
    assert (ticket.state, ticket.tags, ticket.category) == ("DONE", ["spam"], "spam")
    async with sessionmaker() as session:
        assert await session.scalar(select(Message.id)) is not None  # flagged, not deleted
        assert (await session.scalars(select(Draft))).all() == []


async def test_a_model_outage_is_retried_later_and_never_blocks_ingestion(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    with OpenAITestServer() as server:
        model = openai_model(server)
        server.inject(Fault(status=503, times=2))  # both transport attempts of the triage call
        await ingest(sessionmaker, mailbox, raw_email(subject="Invoice", body="Invoice wrong"))
        assert await work(sessionmaker, model) == 1
        async with sessionmaker() as session:
            [task] = (await session.scalars(select(ReasoningTask))).all()
            assert (task.status, task.attempts) == ("pending", 1)
            assert "unavailable" in (task.last_error or "")
            assert task.next_attempt_at > utcnow() + timedelta(seconds=20)
            [call] = (await session.scalars(select(ModelCall))).all()
            assert (call.outcome, call.provider) == ("unavailable", "openai")
        # Mail keeps arriving meanwhile, and the failed task is not due yet.
        await ingest(sessionmaker, mailbox, raw_email(subject="Other", body="Another question"))
        assert (await _count(sessionmaker, Ticket)) == 2

        server.responder = benign
        async with sessionmaker() as session:  # time passes: the retry is due
            await session.execute(update(ReasoningTask).values(next_attempt_at=utcnow()))
            await session.commit()
        assert await work(sessionmaker, model) == 2
        async with sessionmaker() as session:
            statuses = set(await session.scalars(select(ReasoningTask.status)))
            assert statuses == {"done"}
            assert len((await session.scalars(select(Draft))).all()) == 2
        await model.aclose()


async def test_a_newer_customer_message_supersedes_the_older_proposal(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(subject="App crash", body="The app crashes on start.", message_id="<a@x>"),
    )
    await work(sessionmaker, OFFLINE)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(
            subject="Re: App crash",
            body="It also crashes when I open settings.",
            message_id="<b@x>",
            in_reply_to="<a@x>",
        ),
    )
    await work(sessionmaker, OFFLINE)
    async with sessionmaker() as session:
        drafts = (await session.scalars(select(Draft).order_by(Draft.id))).all()
        assert [d.status for d in drafts] == ["superseded", "proposed"]
        newest = await session.scalar(select(Message.id).order_by(Message.id.desc()))
        assert drafts[1].source_message_id == newest


async def test_a_claimed_task_is_not_taken_twice_until_its_lease_ends(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(body="Where is my invoice?"))
    first = await reasoning_tasks.claim(sessionmaker, "worker-a", timedelta(minutes=5))
    assert first is not None
    assert await reasoning_tasks.claim(sessionmaker, "worker-b", timedelta(minutes=5)) is None
    async with sessionmaker() as session:  # worker-a died; its lease runs out
        await session.execute(
            update(ReasoningTask).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    again = await reasoning_tasks.claim(sessionmaker, "worker-b", timedelta(minutes=5))
    assert again is not None
    assert (again.id, again.attempts) == (first.id, 2)


async def test_queued_tasks_of_one_ticket_are_folded_into_one_run(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(body="First", message_id="<f1@x>"))
    await ingest(
        sessionmaker, mailbox, raw_email(body="Second", message_id="<f2@x>", in_reply_to="<f1@x>")
    )
    assert await work(sessionmaker, OFFLINE) == 1
    async with sessionmaker() as session:
        tasks = (await session.scalars(select(ReasoningTask).order_by(ReasoningTask.id))).all()
        assert [t.status for t in tasks] == ["done", "done"]
        assert tasks[1].last_error == f"folded into task {tasks[0].id}"
        assert len((await session.scalars(select(TriageResult))).all()) == 1


async def _count(sessionmaker: SessionMaker, entity: type[object]) -> int:
    async with sessionmaker() as session:
        return len((await session.scalars(select(entity))).all())


async def test_a_new_message_retires_the_old_proposal_even_without_a_new_draft(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(subject="App crash", body="The app crashes on start.", message_id="<s1@x>"),
    )
    await work(sessionmaker, OFFLINE)
    await ingest(
        sessionmaker,
        mailbox,
        raw_email(
            subject="Re: App crash",
            body="Thanks, I will wait for your answer.",
            message_id="<s2@x>",
            in_reply_to="<s1@x>",
        ),
    )
    async with sessionmaker() as session:  # retired at ingestion, before any model runs
        [draft] = (await session.scalars(select(Draft))).all()
        assert (draft.status, draft.status_reason) == (
            "superseded",
            "a newer customer message arrived",
        )
    await work(sessionmaker, OFFLINE)
    async with sessionmaker() as session:
        assert {d.status for d in await session.scalars(select(Draft))} == {"superseded"}
        ticket = (await session.scalars(select(Ticket))).one()
        assert (ticket.category, ticket.priority) == ("bug", "normal")  # not lowered by "thanks"


async def test_a_worker_whose_lease_ran_out_leaves_the_task_to_its_successor(
    sessionmaker: SessionMaker,
) -> None:
    mailbox = await support_mailbox(sessionmaker)
    await ingest(sessionmaker, mailbox, raw_email(body="The invoice total is wrong, please fix."))
    slow = await reasoning_tasks.claim(sessionmaker, "worker-a", timedelta(minutes=5))
    assert slow is not None
    async with sessionmaker() as session:  # worker-a stalls past its lease; worker-b takes over
        await session.execute(
            update(ReasoningTask).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    successor = await reasoning_tasks.claim(sessionmaker, "worker-b", timedelta(minutes=5))
    assert successor is not None
    await reasoning_tasks.process(sessionmaker, OFFLINE, config(), slow)  # worker-a wakes up
    async with sessionmaker() as session:
        task = (await session.scalars(select(ReasoningTask))).one()
        assert (task.status, task.lease_owner) == ("running", "worker-b")
        assert (await session.scalars(select(Draft))).all() == []  # a drafts nothing once lost


async def test_a_question_we_already_answered_is_triaged_but_not_drafted(
    sessionmaker: SessionMaker,
) -> None:
    """Our reply synced in the same batch as the question (or sent from the mailbox itself):
    a proposal for an answered message would only be noise on the ticket."""
    mailbox = await support_mailbox(sessionmaker)
    question = raw_email(subject="Broken zip", body="The zipper broke. Can I get a new one?",
                         message_id="<q@example.org>", minutes=0)  # fmt: skip
    answer = raw_email(sender=mailbox.address, subject="Re: Broken zip", minutes=10,
                       body="We are sending a new one today.", in_reply_to="<q@example.org>")  # fmt: skip
    await ingest(sessionmaker, mailbox, question)
    await ingest(sessionmaker, mailbox, answer)
    await work(sessionmaker, OFFLINE)
    async with sessionmaker() as session:
        assert (await session.scalars(select(TriageResult))).all() != []
        assert (await session.scalars(select(Draft))).all() == []
    follow_up = raw_email(subject="Re: Broken zip", body="It has not arrived. Where is it?",
                          in_reply_to="<q@example.org>", minutes=30)  # fmt: skip
    await ingest(sessionmaker, mailbox, follow_up)
    await work(sessionmaker, OFFLINE)
    async with sessionmaker() as session:
        assert len((await session.scalars(select(Draft))).all()) == 1  # a new question: drafted
