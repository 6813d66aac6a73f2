from typing import Annotated

from fastapi import APIRouter, Cookie, Query, Request
from fastapi.responses import RedirectResponse

from communication_agent.adapters.factory import gmail_authorizer
from communication_agent.api.deps import AdminActor, SessionDep
from communication_agent.models.schemas.mailboxes import MailboxRead, mailbox_read
from communication_agent.services import gmail_connect, mailboxes

router = APIRouter(prefix="/oauth/gmail", tags=["mailboxes"])
COOKIE_PATH = "/oauth/gmail"


@router.get(
    "/start",
    status_code=303,
    response_class=RedirectResponse,
    responses={
        303: {"description": "To Google's consent screen."},
        503: {"description": "Gmail is not configured on this server (no OAuth client)."},
    },
    summary="Connect a Gmail mailbox: redirects to Google's consent screen",
)
async def start(request: Request, actor: AdminActor) -> RedirectResponse:
    settings = request.app.state.settings
    begun = gmail_connect.begin_connection(
        gmail_authorizer(settings),
        request.app.state.secret_key.get_secret_value(),
        user_id=actor.user_id or 0,
        redirect_uri=str(request.url_for("gmail_oauth_callback")),
    )
    response = RedirectResponse(begun.url, status_code=303)
    response.set_cookie(
        gmail_connect.COOKIE_NAME,
        begun.cookie,
        max_age=gmail_connect.STATE_MAX_AGE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(
    "/callback",
    name="gmail_oauth_callback",
    response_model=MailboxRead,
    summary="Google returns here",
)
async def callback(
    request: Request,
    session: SessionDep,
    actor: AdminActor,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    oauth_cookie: Annotated[
        str | None, Cookie(alias=gmail_connect.COOKIE_NAME, max_length=4000)
    ] = None,
) -> MailboxRead | RedirectResponse:
    """A browser (the console's Connect button) is sent back to the mailboxes page; an API
    client gets the mailbox as JSON."""
    mailbox = await gmail_connect.complete_connection(
        session,
        actor,
        gmail_authorizer(request.app.state.settings),
        request.app.state.secret_key.get_secret_value(),
        code=code,
        state=state,
        cookie=oauth_cookie,
        error=error,
        redirect_uri=str(request.url_for("gmail_oauth_callback")),
    )
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/mailboxes?done=connected", status_code=303)  # a browser
    [health] = await mailboxes.list_mailboxes(session, mailbox.id)
    return mailbox_read(health)
