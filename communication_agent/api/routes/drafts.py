"""Reviewing drafts: edit, approve, discard, recall, retry. Viewers can only read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request

from communication_agent.api.deps import CurrentActor, OperatorActor, SessionDep
from communication_agent.core.config import Settings
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse
from communication_agent.models.schemas.tickets import (
    DraftEdit,
    DraftRead,
    DraftVersionRead,
    DraftVersionRef,
)
from communication_agent.services import drafts
from communication_agent.services.errors import InvalidInputError

router = APIRouter(prefix="/drafts", tags=["drafts"])
DraftId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The draft's id.")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such draft."},
    409: {
        "model": ErrorResponse,
        "description": "Stale version (details hold the current draft) or a state that forbids it.",
    },
}


def _rules(request: Request) -> drafts.ApprovalRules:
    settings: Settings = request.app.state.settings
    return drafts.rules_from(settings)


@router.get("/{draft_id}", response_model=DraftRead, responses=RESPONSES, summary="A draft")
async def get_draft(session: SessionDep, _actor: CurrentActor, draft_id: DraftId) -> DraftRead:
    return DraftRead.model_validate(await drafts.load(session, draft_id))


@router.get(
    "/{draft_id}/versions",
    response_model=list[DraftVersionRead],
    responses=RESPONSES,
    summary="Every text the draft has had, with its author",
)
async def draft_versions(
    session: SessionDep, _actor: CurrentActor, draft_id: DraftId
) -> list[DraftVersionRead]:
    return [DraftVersionRead.model_validate(v) for v in await drafts.versions(session, draft_id)]


@router.patch("/{draft_id}", response_model=DraftRead, responses=RESPONSES, summary="Edit")
async def edit_draft(
    session: SessionDep,
    actor: OperatorActor,
    draft_id: DraftId,
    body: DraftEdit,
    if_match: Annotated[
        str | None, Header(description="The version, instead of the body's.")
    ] = None,
) -> DraftRead:
    version = body.version if body.version is not None else _version_from(if_match)
    draft = await drafts.edit(session, actor, draft_id, body=body.body, expected_version=version)
    return DraftRead.model_validate(draft)


@router.post(
    "/{draft_id}/approve",
    response_model=DraftRead,
    responses=RESPONSES,
    summary="Approve this exact text; it is queued for sending",
)
async def approve_draft(
    request: Request,
    session: SessionDep,
    actor: OperatorActor,
    draft_id: DraftId,
    body: DraftVersionRef,
) -> DraftRead:
    draft = await drafts.approve(
        session, actor, draft_id, expected_version=body.version, rules=_rules(request)
    )
    return DraftRead.model_validate(draft)


@router.post(
    "/{draft_id}/discard", response_model=DraftRead, responses=RESPONSES, summary="Discard"
)
async def discard_draft(
    session: SessionDep, actor: OperatorActor, draft_id: DraftId, body: DraftVersionRef
) -> DraftRead:
    draft = await drafts.discard(session, actor, draft_id, expected_version=body.version)
    return DraftRead.model_validate(draft)


@router.post(
    "/{draft_id}/recall",
    response_model=DraftRead,
    responses=RESPONSES,
    summary="Take an approval back while the reply waits in the undo window",
)
async def recall_draft(session: SessionDep, actor: OperatorActor, draft_id: DraftId) -> DraftRead:
    return DraftRead.model_validate(await drafts.recall(session, actor, draft_id))


@router.post(
    "/{draft_id}/retry",
    response_model=DraftRead,
    responses=RESPONSES,
    summary="Send a failed reply again (the same approved text)",
)
async def retry_draft(
    request: Request, session: SessionDep, actor: OperatorActor, draft_id: DraftId
) -> DraftRead:
    draft = await drafts.retry(session, actor, draft_id, rules=_rules(request))
    return DraftRead.model_validate(draft)


def _version_from(if_match: str | None) -> int:
    value = (if_match or "").strip().strip('"').removeprefix("W/").strip('"')
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_DB_INT:
        raise InvalidInputError(
            'send the draft version you edited, as "version" in the body or as If-Match'
        )
    return int(value)
