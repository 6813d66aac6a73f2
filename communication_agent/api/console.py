"""What every console page shares: the signed-in operator, CSRF, templates and error pages.

Console pages authenticate with the session cookie only (never a bearer token), and every
state-changing request must carry the session's CSRF token, as a form field or, for htmx, in
the `X-CSRF-Token` header. A request without a valid session is sent to the sign-in page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from communication_agent.api.deps import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    SessionDep,
    csrf_refused,
)
from communication_agent.models import User
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Role, TicketState
from communication_agent.services import web_sessions
from communication_agent.services.actors import Actor
from communication_agent.services.errors import AuthenticationError, PermissionDeniedError
from communication_agent.services.state_machine import allowed_targets

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
templates = Jinja2Templates(directory=UI_DIR / "templates")

# Paths that are the API or machinery rather than console pages: their errors stay JSON.
NON_CONSOLE_PREFIXES = ("/api/", "/oauth/", "/healthz", "/readyz", "/metrics", "/openapi.json",
                        "/docs", "/static/")  # fmt: skip

# Headers on every console page. The page itself may only run our own script and load our
# own styles; email HTML is shown in a sandboxed frame served with a stricter policy still.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Console:
    """The signed-in person on a console request."""

    actor: Actor
    user: User
    csrf_token: str

    def can(self, role: str) -> bool:
        return self.actor.role is not None and self.actor.role.includes(Role(role))


def is_console_path(path: str) -> bool:
    return not path.startswith(NON_CONSOLE_PREFIXES)


def is_console_request(request: Request) -> bool:
    """A console page, or the Gmail connection flow as a browser walks it (its errors are
    then pages too, with a way back, rather than JSON)."""
    path = request.url.path
    if path.startswith("/oauth/"):
        return "text/html" in request.headers.get("accept", "")
    return is_console_path(path)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def get_console(request: Request, session: SessionDep) -> Console:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise AuthenticationError("Sign in to use the console.")
    resolved = await web_sessions.resolve(session, cookie)
    if request.method not in SAFE_METHODS and not web_sessions.csrf_matches(
        resolved.csrf_token, await _presented_csrf(request)
    ):
        raise csrf_refused()
    return Console(resolved.actor, resolved.user, resolved.csrf_token)


def _requiring(role: Role) -> Any:
    async def check(console: Annotated[Console, Depends(get_console)]) -> Console:
        if not console.can(role.value):
            have = console.actor.role.value if console.actor.role else "no role"
            raise PermissionDeniedError(
                f"This needs the {role.value} role; you are signed in as a {have}.",
                required_role=role.value,
            )
        return console

    return check


ConsoleDep = Annotated[Console, Depends(get_console)]
OperatorConsole = Annotated[Console, Depends(_requiring(Role.OPERATOR))]
AdminConsole = Annotated[Console, Depends(_requiring(Role.ADMIN))]


def render(
    request: Request,
    template: str,
    console: Console | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        template,
        {"console": console, "now": utcnow(), **context},
        status_code=status_code,
        headers={**PAGE_SECURITY_HEADERS, **(headers or {})},
    )
    return response


def see_other(url: str) -> RedirectResponse:
    """The answer to a successful form post (Post/Redirect/Get): reloading never re-posts."""
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> Response:
    """Send an anonymous browser to sign in, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    """A refused or failed console request: the message, and a way back. Under htmx only the
    message is returned, aimed at the page's flash area."""
    if is_htmx(request):
        return render(
            request,
            "_flash.html",
            None,
            status_code=status_code,
            # Only the flash area changes, and the address stays that of the page (a boosted
            # form would otherwise push its action URL, which a reload would then GET).
            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML", "HX-Push-Url": "false"},
            level="error",
            message=message,
        )
    return render(request, "error.html", None, status_code=status_code, message=message)


def _age(value: datetime | None) -> str:
    """ "3m", "5h", "2d": a card's age at a glance."""
    if value is None:
        return ""
    seconds = max(0, int((utcnow() - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return "now"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _filesize(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@functools.cache
def _move_options(state: str) -> Markup:
    """The `<option>`s of a card's "move to" menu: the same for every card in a state."""
    return Markup("").join(
        Markup('<option value="{}">{}</option>').format(s.value, s.value.replace("_", " "))
        for s in allowed_targets(TicketState(state))
    )


templates.env.globals["move_options"] = _move_options
templates.env.filters["age"] = _age
templates.env.filters["when"] = _when
templates.env.filters["filesize"] = _filesize
templates.env.filters["duration"] = _duration
