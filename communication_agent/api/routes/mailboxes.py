import os
import socket
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from communication_agent.api.deps import (
    CurrentActor,
    OperatorActor,
    ProviderOpenerDep,
    SessionDep,
    SessionMakerDep,
)
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse, PageOf
from communication_agent.models.schemas.mailboxes import (
    MailboxRead,
    QuarantinedRead,
    SyncResult,
    mailbox_read,
)
from communication_agent.services import mailboxes, sync

router = APIRouter(prefix="/mailboxes", tags=["mailboxes"])

MailboxId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The mailbox's id.")]
SYNC_OWNER = f"api:{socket.gethostname()}:{os.getpid()}"


@router.get("", response_model=list[MailboxRead], summary="Mailboxes and their sync health")
async def list_mailboxes(session: SessionDep, _actor: CurrentActor) -> list[MailboxRead]:
    return [mailbox_read(h) for h in await mailboxes.list_mailboxes(session)]


@router.post(
    "/{mailbox_id}/sync",
    response_model=SyncResult,
    responses={
        404: {"model": ErrorResponse, "description": "No such mailbox."},
        409: {"model": ErrorResponse, "description": "Already syncing, or must be reconnected."},
        502: {"model": ErrorResponse, "description": "The mail provider failed; retried later."},
    },
    summary="Sync the mailbox now and report what came in",
)
async def sync_now(
    request: Request,
    sessionmaker: SessionMakerDep,
    _actor: OperatorActor,
    open_provider: ProviderOpenerDep,
    mailbox_id: MailboxId,
) -> SyncResult:
    counts = await sync.sync_mailbox(
        sessionmaker,
        mailbox_id,
        open_provider,
        owner=SYNC_OWNER,
        lease=request.app.state.settings.sync_lease,
    )
    return SyncResult.model_validate(counts.as_dict())


@router.get(
    "/{mailbox_id}/quarantine",
    response_model=PageOf[QuarantinedRead],
    summary="Messages that could not be parsed, newest first",
)
async def quarantine(
    session: SessionDep,
    _actor: CurrentActor,
    mailbox_id: MailboxId,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PageOf[QuarantinedRead]:
    page = await mailboxes.list_quarantine(session, mailbox_id, cursor=cursor, limit=limit)
    return PageOf(
        items=[
            QuarantinedRead(
                id=q.id,
                mailbox_id=q.mailbox_id,
                provider_message_id=q.provider_message_id,
                reason=q.reason,
                size=len(q.raw),
                created_at=q.created_at,
            )
            for q in page.items
        ],
        next_cursor=page.next_cursor,
    )
