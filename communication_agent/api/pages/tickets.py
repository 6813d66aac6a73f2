"""The ticket workspace and the operator's actions on a ticket and its draft.

Each action is a plain HTML form (it works without JavaScript) answered with a redirect back
to the page and a one-line notice; with htmx the same forms update the page in place, and a
refused action shows its reason in the flash area without losing the operator's text.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from communication_agent.api.console import ConsoleDep, OperatorConsole, render, see_other
from communication_agent.api.deps import (
    AssistantConfigDep,
    ReasoningModelDep,
    SessionDep,
    SessionMakerDep,
)
from communication_agent.api.pages.auth import safe_next
from communication_agent.models.enums import TicketState
from communication_agent.models.schemas.common import MAX_DB_INT
from communication_agent.services import assistant, drafts, tickets, workspace
from communication_agent.services.errors import InvalidInputError
from communication_agent.services.mail_parsing import sanitise_html
from communication_agent.services.text_diff import word_diff

router = APIRouter(include_in_schema=False)

DbId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
Version = Annotated[int, Form(ge=1, le=MAX_DB_INT)]
DraftText = Annotated[str, Form(max_length=100_000)]

# What a successful action says afterwards. Only these fixed texts are ever shown, so a crafted
# link cannot make the page display words of an attacker's choosing.
NOTICES = {
    "moved": "Ticket moved.",
    "assigned": "Assignment saved.",
    "noted": "Note added.",
    "saved": "Draft saved.",
    "approved": "Approved: the reply is queued and will be sent shortly.",
    "discarded": "Draft discarded.",
    "recalled": "Approval recalled: the reply will not be sent.",
    "retried": "The reply will be sent again (after checking it did not go out already).",
    "drafted": "A new draft is ready.",
    "written": "Your draft is saved.",
    "triaged": "Triage updated.",
}

# Email HTML is shown in a sandboxed frame: no script, no plug-in, no form, no navigation of
# the console, and remote images blocked (a tracking pixel tells the sender you read it) until
# the operator asks for them.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:{images}; "
    "sandbox allow-popups allow-popups-to-escape-sandbox; base-uri 'none'; form-action 'none'"
)


def _back_to_ticket(ticket_id: int, notice: str) -> Response:
    return see_other(f"/tickets/{ticket_id}?done={notice}")


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
async def ticket_page(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    ticket_id: DbId,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    view = await workspace.load(session, ticket_id)
    return render(
        request,
        "ticket.html",
        console,
        nav="board",
        ws=view,
        t=view.detail.ticket,
        notice=NOTICES.get(done),
        states=list(TicketState),
    )


@router.get("/tickets/{ticket_id}/messages/{message_id}/html", response_class=HTMLResponse)
async def message_html(
    session: SessionDep,
    _console: ConsoleDep,
    ticket_id: DbId,
    message_id: DbId,
    images: bool = False,
) -> HTMLResponse:
    message = await tickets.ticket_message(session, ticket_id, message_id)
    body = sanitise_html(message.body_html or "")  # stored sanitised; cleaned again on the way out
    document = (
        '<!doctype html><html><head><meta charset="utf-8"><base target="_blank">'
        "<style>body{font:14px/1.5 system-ui,sans-serif;margin:8px;color:#1d2433}"
        "img{max-width:100%;height:auto}</style></head><body>"
        f"{body}</body></html>"
    )
    csp = EMAIL_CSP.format(images=" https: http:" if images else "")
    return HTMLResponse(
        document,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


@router.post("/tickets/{ticket_id}/state")
async def move(
    session: SessionDep,
    console: OperatorConsole,
    ticket_id: DbId,
    state: Annotated[TicketState, Form()],
    version: Version,
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    await tickets.change_state(
        session, console.actor, ticket_id, target=state, expected_version=version
    )
    if back:
        return see_other(safe_next(back))
    return _back_to_ticket(ticket_id, "moved")


@router.post("/tickets/{ticket_id}/assign")
async def assign(
    session: SessionDep,
    console: OperatorConsole,
    ticket_id: DbId,
    version: Version,
    assignee: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """`assignee` is a user id, `me`, or empty for nobody."""
    if assignee == "me":
        assignee_id: int | None = console.actor.user_id
    elif assignee == "":
        assignee_id = None
    elif assignee.isdigit() and 0 < int(assignee) <= MAX_DB_INT:
        assignee_id = int(assignee)
    else:
        raise InvalidInputError(f"Choose someone to assign, not {assignee!r}.")
    await tickets.assign(
        session, console.actor, ticket_id, assignee_id=assignee_id, expected_version=version
    )
    return _back_to_ticket(ticket_id, "assigned")


@router.post("/tickets/{ticket_id}/notes")
async def add_note(
    session: SessionDep,
    console: OperatorConsole,
    ticket_id: DbId,
    body: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    if not body.strip():
        raise InvalidInputError("The note is empty; write something first.")
    await tickets.add_note(session, console.actor, ticket_id, body=body.strip())
    return _back_to_ticket(ticket_id, "noted")


@router.post("/tickets/{ticket_id}/regenerate")
async def regenerate(
    sessionmaker: SessionMakerDep,
    model: ReasoningModelDep,
    config: AssistantConfigDep,
    console: OperatorConsole,
    ticket_id: DbId,
    instruction: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    await assistant.draft_ticket(
        sessionmaker,
        model,
        config,
        ticket_id,
        actor=console.actor,
        instruction=instruction.strip() or None,
    )
    return _back_to_ticket(ticket_id, "drafted")


@router.post("/tickets/{ticket_id}/triage")
async def triage(
    sessionmaker: SessionMakerDep,
    model: ReasoningModelDep,
    config: AssistantConfigDep,
    console: OperatorConsole,
    ticket_id: DbId,
) -> Response:
    await assistant.triage_ticket(sessionmaker, model, config, ticket_id, actor=console.actor)
    return _back_to_ticket(ticket_id, "triaged")


@router.post("/tickets/{ticket_id}/drafts")
async def write_draft(
    session: SessionDep, console: OperatorConsole, ticket_id: DbId, body: DraftText = ""
) -> Response:
    if not body.strip():
        raise InvalidInputError("The reply is empty; write it first.")
    await drafts.create(session, console.actor, ticket_id, body)
    return _back_to_ticket(ticket_id, "written")


@router.post("/drafts/{draft_id}/save")
async def save_draft(
    session: SessionDep, console: OperatorConsole, draft_id: DbId, body: DraftText, version: Version
) -> Response:
    draft = await drafts.edit(session, console.actor, draft_id, body=body, expected_version=version)
    return _back_to_ticket(draft.ticket_id, "saved")


@router.post("/drafts/{draft_id}/approve")
async def approve_draft(
    request: Request,
    session: SessionDep,
    console: OperatorConsole,
    draft_id: DbId,
    body: DraftText,
    version: Version,
) -> Response:
    draft = await drafts.save_and_approve(
        session,
        console.actor,
        draft_id,
        body=body,
        expected_version=version,
        rules=drafts.rules_from(request.app.state.settings),
    )
    return _back_to_ticket(draft.ticket_id, "approved")


@router.post("/drafts/{draft_id}/discard")
async def discard_draft(
    session: SessionDep, console: OperatorConsole, draft_id: DbId, version: Version
) -> Response:
    draft = await drafts.discard(session, console.actor, draft_id, expected_version=version)
    return _back_to_ticket(draft.ticket_id, "discarded")


@router.post("/drafts/{draft_id}/recall")
async def recall_draft(session: SessionDep, console: OperatorConsole, draft_id: DbId) -> Response:
    draft = await drafts.recall(session, console.actor, draft_id)
    return _back_to_ticket(draft.ticket_id, "recalled")


@router.post("/drafts/{draft_id}/retry")
async def retry_draft(
    request: Request, session: SessionDep, console: OperatorConsole, draft_id: DbId
) -> Response:
    rules = drafts.rules_from(request.app.state.settings)
    draft = await drafts.retry(session, console.actor, draft_id, rules=rules)
    return _back_to_ticket(draft.ticket_id, "retried")


@router.post("/drafts/{draft_id}/diff", response_class=HTMLResponse)
async def preview_diff(
    request: Request, session: SessionDep, console: OperatorConsole, draft_id: DbId, body: DraftText
) -> HTMLResponse:
    """The live diff under the editor: the model's proposal against the text being typed."""
    draft = await drafts.load(session, draft_id)
    pieces = word_diff(draft.proposed_body, body) if draft.proposed_body else None
    return render(request, "_diff.html", console, diff=pieces)
