"""Triage, routing and drafting for one ticket, with whichever backend is configured.

Each operation has three steps, so that no transaction is open while a model thinks:
read the ticket into a `TicketContext` (short read), call the model (no session), then write the
result, the routing decision, the model-call records and the activity entries in one write
transaction. A failed model call still records its attempts; nothing half-written remains.

The model's output is advice: triage changes the ticket only through `routing.decide`, and a
proposal is stored as a `proposed` draft that only an operator can approve (issue 5's flow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from communication_agent.adapters.reasoning import CallRecord, ReasoningModel
from communication_agent.core import metrics
from communication_agent.core.config import ConfigurationError, Settings
from communication_agent.core.db import begin_write
from communication_agent.models import (
    Contact,
    Draft,
    DraftVersion,
    Mailbox,
    Message,
    ModelCall,
    Ticket,
    TriageResult,
)
from communication_agent.models.enums import Direction, DraftStatus, Priority, TicketState
from communication_agent.models.schemas.reasoning import (
    ContextMessage,
    EarlierTicket,
    Proposal,
    TicketContext,
    Triage,
)
from communication_agent.services import activity, routing, safety, webhook_events
from communication_agent.services.actors import Actor
from communication_agent.services.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    NotFoundError,
)
from communication_agent.services.knowledge import KnowledgeBase
from communication_agent.services.tickets import apply_transition

TRIAGE_ACTOR = Actor.system("triage")
DRAFT_ACTOR = Actor.system("drafting")
MAX_MESSAGES = 12  # the newest ones; older history adds cost, rarely facts
MAX_TEXT = 6000  # characters per message given to a model
EARLIER_TICKETS = 5

SessionMaker = async_sessionmaker[AsyncSession]


class ModelFailedError(DomainError):
    """The backend gave no usable answer; its attempts are recorded, the reason is here."""

    code = "model_failed"


@dataclass(frozen=True)
class AssistantConfig:
    categories: list[str]
    auto_done_confidence: float
    knowledge: KnowledgeBase
    secrets: tuple[str, ...] = ()  # never to appear in a draft (flagged if they do)

    @classmethod
    def from_settings(cls, settings: Settings, secrets: tuple[str, ...] = ()) -> AssistantConfig:
        try:
            knowledge = KnowledgeBase.load(settings.knowledge_path)
        except ValueError as exc:
            raise ConfigurationError(f"COMMAGENT_KNOWLEDGE_PATH: {exc}") from exc
        return cls(
            categories=settings.categories,
            auto_done_confidence=settings.auto_done_confidence,
            knowledge=knowledge,
            secrets=secrets,
        )


@dataclass(frozen=True)
class Prepared:
    context: TicketContext
    flags: list[str]
    latest_message_id: int | None
    closable: bool = False  # the newest message passes safety.looks_closable


async def prepare(
    session: AsyncSession,
    ticket_id: int,
    config: AssistantConfig,
    *,
    instruction: str | None = None,
    before_message_id: int | None = None,
) -> Prepared:
    """The ticket as a model may see it, plus the review flags of its conversation
    (`before_message_id`: as it was before that message, for replaying history)."""
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"ticket {ticket_id} does not exist", ticket_id=ticket_id)
    contact = await session.get_one(Contact, ticket.contact_id)
    mailbox = await session.get_one(Mailbox, ticket.mailbox_id)
    query = select(Message).where(Message.ticket_id == ticket_id, Message.is_automated.is_(False))
    if before_message_id is not None:
        query = query.where(Message.id < before_message_id)
    rows = list(await session.scalars(query.order_by(Message.id.desc()).limit(MAX_MESSAGES)))[::-1]
    earlier = await session.scalars(
        select(Ticket)
        .where(Ticket.contact_id == ticket.contact_id, Ticket.id != ticket_id)
        .order_by(Ticket.id.desc())
        .limit(EARLIER_TICKETS)
    )
    messages = [
        ContextMessage(
            id=m.id,
            direction="outbound" if m.direction == Direction.OUTBOUND.value else "inbound",
            from_name=m.from_name,
            from_address=m.from_address,
            sent_at=m.sent_at or m.received_at,
            subject=m.subject,
            text=(m.new_content_text or m.body_text)[:MAX_TEXT],
            suspicious_html=bool((m.flags or {}).get("hidden_html")),
        )
        for m in rows
    ]
    inbound = [m for m in messages if m.direction == "inbound"]
    newest_text = f"{ticket.subject}\n{inbound[-1].text if inbound else ''}"
    context = TicketContext(
        ticket_id=ticket.id,
        subject=ticket.subject,
        customer_name=contact.name,
        customer_email=contact.email,
        mailbox_address=mailbox.address,
        messages=messages,
        earlier_tickets=[
            EarlierTicket(
                id=t.id,
                subject=t.subject,
                state=t.state,
                category=t.category,
                created_at=t.created_at,
            )
            for t in earlier
        ],
        knowledge=config.knowledge.pick(newest_text, ticket.category),
        categories=config.categories,
        instruction=instruction,
    )
    full = {m.id: m.body_text for m in rows}
    return Prepared(
        context,
        safety.injection_flags(context, full),
        inbound[-1].id if inbound else None,
        closable=bool(inbound) and safety.looks_closable(inbound[-1].text),
    )


def record_calls(session: AsyncSession, ticket_id: int | None, calls: Sequence[CallRecord]) -> None:
    for call in calls:
        session.add(
            ModelCall(
                ticket_id=ticket_id,
                task=call.task,
                provider=call.provider,
                model=call.model,
                prompt_version=call.prompt_version,
                latency_ms=call.latency_ms,
                tokens_in=call.tokens_in,
                tokens_out=call.tokens_out,
                outcome=call.outcome,
                error=call.error,
            )
        )


async def _fail(
    session: AsyncSession,
    actor: Actor,
    action: str,
    ticket_id: int,
    *,
    provider: str,
    error: str | None,
) -> NoReturn:
    """Keep the record of the failed attempts (calls, log entry), then report the failure."""
    reason = error or "the model gave no answer"
    activity.record(
        session,
        actor,
        action,
        ticket_id=ticket_id,
        details={"provider": provider, "reason": reason},
    )
    await session.commit()
    raise ModelFailedError(reason, ticket_id=ticket_id)


@dataclass(frozen=True)
class TriageOutcome:
    result: TriageResult
    routed_to: TicketState | None


async def triage_ticket(
    sessionmaker: SessionMaker,
    model: ReasoningModel,
    config: AssistantConfig,
    ticket_id: int,
    *,
    actor: Actor = TRIAGE_ACTOR,
) -> TriageOutcome:
    """Triage the ticket's newest customer message and route it by the policy."""
    async with sessionmaker() as session:
        prepared = await prepare(session, ticket_id, config)
    if prepared.latest_message_id is None:
        raise InvalidInputError(
            f"ticket {ticket_id} has no customer message to triage", ticket_id=ticket_id
        )
    answer = await model.triage(prepared.context)
    metrics.observe_model_calls(answer.calls)
    async with sessionmaker() as session:
        await begin_write(session)
        record_calls(session, ticket_id, answer.calls)
        if answer.value is None:
            await _fail(
                session,
                actor,
                "triage.failed",
                ticket_id,
                provider=model.provider,
                error=answer.error,
            )
        outcome = _store_triage(session, model, answer.value, prepared, actor=actor)
        ticket = await session.get_one(Ticket, ticket_id)
        decision = routing.decide(
            answer.value,
            TicketState(ticket.state),
            prepared.flags,
            auto_done_confidence=config.auto_done_confidence,
            closable=prepared.closable,
        )
        outcome.routing = decision.reason
        _classify(ticket, answer.value)
        ticket.tags = sorted(set(ticket.tags or []) | set(decision.tags))
        if decision.target is not None:
            apply_transition(session, TRIAGE_ACTOR, ticket, decision.target, decision.reason)
        try:
            await session.commit()
        except StaleDataError as exc:
            await session.rollback()
            async with sessionmaker() as retry_session:  # the calls were made: keep their record
                await begin_write(retry_session)
                record_calls(retry_session, ticket_id, answer.calls)
                await retry_session.commit()
            raise ConflictError(
                f"ticket {ticket_id} changed while it was being triaged; triage it again",
                ticket_id=ticket_id,
            ) from exc
        return TriageOutcome(outcome, decision.target)


def _classify(ticket: Ticket, triage: Triage) -> None:
    """A new ticket takes the triage's category and priority. On a ticket a person already
    handles, a later message may raise its priority (a follow-up that is urgent), never lower
    it or change its category: "thanks, waiting for you" must not bury an open problem."""
    if ticket.state == TicketState.NEW.value or ticket.category is None:
        ticket.category = triage.category
        ticket.priority = triage.priority.value
        return
    order = [p.value for p in Priority]
    if order.index(triage.priority.value) > order.index(ticket.priority):
        ticket.priority = triage.priority.value


def _store_triage(
    session: AsyncSession,
    model: ReasoningModel,
    triage: Triage,
    prepared: Prepared,
    *,
    actor: Actor,
) -> TriageResult:
    result = TriageResult(
        ticket_id=prepared.context.ticket_id,
        message_id=prepared.latest_message_id,
        category=triage.category,
        priority=triage.priority.value,
        sentiment=triage.sentiment,
        language=triage.language,
        summary=triage.summary,
        needs_reply=triage.needs_reply,
        suggested_state=triage.suggested_state.value,
        confidence=triage.confidence,
        flags=prepared.flags,
        provider=model.provider,
        model=model.model,
    )
    session.add(result)
    activity.record(
        session,
        actor,
        "triage.completed",
        ticket_id=prepared.context.ticket_id,
        details={
            "category": triage.category,
            "priority": triage.priority.value,
            "needs_reply": triage.needs_reply,
            "confidence": triage.confidence,
            "provider": model.provider,
            "model": model.model,
            "flags": prepared.flags,
        },
    )
    return result


async def draft_ticket(
    sessionmaker: SessionMaker,
    model: ReasoningModel,
    config: AssistantConfig,
    ticket_id: int,
    *,
    actor: Actor = DRAFT_ACTOR,
    instruction: str | None = None,
) -> Draft:
    """Propose a reply and a plan; older proposals of the ticket are superseded."""
    async with sessionmaker() as session:
        prepared = await prepare(session, ticket_id, config, instruction=instruction)
    answer = await model.propose(prepared.context)
    metrics.observe_model_calls(answer.calls)
    async with sessionmaker() as session:
        await begin_write(session)
        record_calls(session, ticket_id, answer.calls)
        if answer.value is None:
            await _fail(
                session,
                actor,
                "draft.failed",
                ticket_id,
                provider=model.provider,
                error=answer.error,
            )
        draft = await _store_proposal(
            session, model, answer.value, prepared, actor=actor, secrets=config.secrets
        )
        await session.commit()
        return draft


async def _store_proposal(
    session: AsyncSession,
    model: ReasoningModel,
    proposal: Proposal,
    prepared: Prepared,
    *,
    actor: Actor,
    secrets: tuple[str, ...],
) -> Draft:
    ticket_id = prepared.context.ticket_id
    flags = prepared.flags + safety.proposal_flags(proposal, prepared.context, list(secrets))
    newest = await session.scalar(
        select(func.max(Message.id)).where(
            Message.ticket_id == ticket_id,
            Message.direction == Direction.INBOUND.value,
            Message.is_automated.is_(False),
        )
    )
    # Drafted from an older state of the conversation (a message arrived meanwhile): kept for
    # the record, but never the live proposal.
    stale = newest is not None and (prepared.latest_message_id or 0) < newest
    if not stale:
        await session.execute(
            update(Draft)
            .where(Draft.ticket_id == ticket_id, Draft.status == DraftStatus.PROPOSED.value)
            .values(
                status=DraftStatus.SUPERSEDED.value,
                status_reason="replaced by a newer proposal",
            )
            .execution_options(synchronize_session=False)
        )
    draft = Draft(
        ticket_id=ticket_id,
        status=(DraftStatus.SUPERSEDED if stale else DraftStatus.PROPOSED).value,
        status_reason="a newer customer message arrived while it was drafted" if stale else None,
        body=proposal.body,
        plan=[step.model_dump() for step in proposal.plan],
        citations=proposal.citations,
        needs_info=proposal.needs_info,
        review_flags=flags,
        language=proposal.language,
        instruction=prepared.context.instruction,
        source_message_id=prepared.latest_message_id,
        author=f"model:{model.provider}/{model.model}"[:100],
        proposed_body=proposal.body,
    )
    session.add(draft)
    await session.flush()
    session.add(DraftVersion(draft_id=draft.id, version=1, body=draft.body, author=draft.author))
    activity.record(
        session,
        actor,
        "draft.proposed",
        ticket_id=ticket_id,
        details={
            "draft_id": draft.id,
            "provider": model.provider,
            "model": model.model,
            "instruction": prepared.context.instruction,
            "review_flags": flags,
        },
    )
    if not stale:
        ticket = await session.get_one(Ticket, ticket_id)
        webhook_events.draft_ready(session, ticket, draft)
    return draft


async def model_calls(session: AsyncSession, ticket_id: int, *, limit: int) -> list[ModelCall]:
    """The ticket's model calls, newest first."""
    if await session.get(Ticket, ticket_id) is None:
        raise NotFoundError(f"ticket {ticket_id} does not exist", ticket_id=ticket_id)
    rows = await session.scalars(
        select(ModelCall)
        .where(ModelCall.ticket_id == ticket_id)
        .order_by(ModelCall.id.desc())
        .limit(limit)
    )
    return list(rows)
