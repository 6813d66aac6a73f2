"""Triage and drafts on demand: the operator's "triage again" and "regenerate" buttons."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from communication_agent.api.deps import (
    AssistantConfigDep,
    CurrentActor,
    OperatorActor,
    ReasoningModelDep,
    SessionDep,
    SessionMakerDep,
    TicketId,
)
from communication_agent.models.schemas.common import ErrorResponse
from communication_agent.models.schemas.tickets import (
    DraftRead,
    DraftRequest,
    ModelCallRead,
    TriageRead,
)
from communication_agent.services import assistant, drafts
from communication_agent.services.errors import InvalidInputError

router = APIRouter(prefix="/tickets", tags=["assistant"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such ticket."},
    502: {
        "model": ErrorResponse,
        "description": "The model backend gave no usable answer (the attempts are recorded).",
    },
}


@router.post(
    "/{ticket_id}/triage",
    response_model=TriageRead,
    responses=RESPONSES,
    summary="Triage the newest customer message now, and route a new ticket by the policy",
)
async def triage(
    sessionmaker: SessionMakerDep,
    model: ReasoningModelDep,
    config: AssistantConfigDep,
    actor: OperatorActor,
    ticket_id: TicketId,
) -> TriageRead:
    outcome = await assistant.triage_ticket(sessionmaker, model, config, ticket_id, actor=actor)
    return TriageRead.model_validate(outcome.result)


@router.post(
    "/{ticket_id}/drafts",
    response_model=DraftRead,
    status_code=status.HTTP_201_CREATED,
    responses=RESPONSES,
    summary="Propose a new draft and plan (optionally following an instruction), or write one",
)
async def regenerate_draft(
    session: SessionDep,
    sessionmaker: SessionMakerDep,
    model: ReasoningModelDep,
    config: AssistantConfigDep,
    actor: OperatorActor,
    ticket_id: TicketId,
    body: DraftRequest | None = None,
) -> DraftRead:
    if body and body.body is not None:
        if not body.body.strip():
            raise InvalidInputError("the draft body is empty; write the reply or leave it out")
        return DraftRead.model_validate(await drafts.create(session, actor, ticket_id, body.body))
    instruction = body.instruction.strip() if body and body.instruction else None
    draft = await assistant.draft_ticket(
        sessionmaker, model, config, ticket_id, actor=actor, instruction=instruction or None
    )
    return DraftRead.model_validate(draft)


@router.get(
    "/{ticket_id}/model-calls",
    response_model=list[ModelCallRead],
    responses={404: RESPONSES[404]},
    summary="Every model call made for the ticket, newest first",
)
async def model_calls(
    session: SessionDep,
    _actor: CurrentActor,
    ticket_id: TicketId,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ModelCallRead]:
    rows = await assistant.model_calls(session, ticket_id, limit=limit)
    return [ModelCallRead.model_validate(r) for r in rows]
