"""Mailboxes (admins): sync health, errors, reconnecting Gmail, syncing now, quarantine."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from communication_agent.api.console import AdminConsole, render, see_other
from communication_agent.api.deps import ProviderOpenerDep, SessionDep, SessionMakerDep
from communication_agent.models.schemas.common import MAX_DB_INT
from communication_agent.services import mailboxes, sync

router = APIRouter(include_in_schema=False)
QUARANTINE_SHOWN = 10
NOTICES = {
    "synced": "Sync finished; the figures below are up to date.",
    "connected": "Gmail is connected; its first sync runs next.",
}


@router.get("/mailboxes", response_class=HTMLResponse)
async def mailboxes_page(
    request: Request,
    session: SessionDep,
    console: AdminConsole,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    healths = await mailboxes.list_mailboxes(session)
    quarantine = {
        h.mailbox.id: (
            await mailboxes.list_quarantine(
                session, h.mailbox.id, cursor=None, limit=QUARANTINE_SHOWN
            )
        ).items
        for h in healths
        if h.quarantined
    }
    return render(
        request,
        "mailboxes.html",
        console,
        nav="mailboxes",
        healths=healths,
        quarantine=quarantine,
        gmail_configured=bool(request.app.state.settings.google_client_id),
        notice=NOTICES.get(done),
    )


@router.post("/mailboxes/{mailbox_id}/sync")
async def sync_now(
    request: Request,
    sessionmaker: SessionMakerDep,
    _console: AdminConsole,
    open_provider: ProviderOpenerDep,
    mailbox_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)],
) -> Response:
    await sync.sync_mailbox(
        sessionmaker,
        mailbox_id,
        open_provider,
        owner="console",
        lease=request.app.state.settings.sync_lease,
    )
    return see_other("/mailboxes?done=synced")
