"""Sign-in and sign-out.

The sign-in form is protected against login CSRF with a double-submit token: a random value in
a short-lived cookie that the form must echo (there is no session yet to hold one).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, Response

from communication_agent.api.console import ConsoleDep, render, see_other
from communication_agent.api.deps import SESSION_COOKIE, SessionDep
from communication_agent.services import web_sessions
from communication_agent.services.errors import AuthenticationError, TooManyAttemptsError

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "ca_login_csrf"
LOGIN_FORM_MAX_AGE = 3600


def safe_next(target: str | None) -> str:
    """Only a path on this site: `//evil.example` or `https://…` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/board"
    return target


def _secure(request: Request) -> bool:
    configured: bool | None = request.app.state.settings.cookie_secure
    return configured if configured is not None else request.url.scheme == "https"


def _login_form(
    request: Request, *, next_url: str, status_code: int = 200, error: str | None = None,
    email: str = "", headers: dict[str, str] | None = None, notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    token = secrets.token_urlsafe(32)
    response = render(
        request, "login.html", None, status_code=status_code, headers=headers,
        login_csrf=token, next_url=next_url, error=error, email=email, notice=notice,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=LOGIN_FORM_MAX_AGE, path="/login", httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, session: SessionDep, next: str | None = None, signed_out: bool = False
) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            await web_sessions.resolve(session, cookie)
            return see_other(safe_next(next))
        except AuthenticationError:
            pass  # an old cookie: show the form
    notice = "You are signed out." if signed_out else None
    return _login_form(request, next_url=safe_next(next), notice=notice)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/board",
    login_cookie: Annotated[str | None, Cookie(alias=LOGIN_CSRF_COOKIE)] = None,
) -> Response:
    target = safe_next(next)
    if not login_cookie or not web_sessions.csrf_matches(login_cookie, csrf_token):
        return _login_form(
            request, next_url=target, status_code=403, email=email,
            error="The sign-in form had expired; please try again.",
        )  # fmt: skip
    if not email.strip() or not password:
        return _login_form(
            request, next_url=target, status_code=422, email=email,
            error="Enter your email and password.",
        )  # fmt: skip
    settings = request.app.state.settings
    try:
        signed_in = await web_sessions.sign_in(
            session,
            email=email,
            password=password,
            client_address=request.client.host if request.client else None,
            limits=web_sessions.LoginLimits(
                settings.login_max_failures,
                timedelta(seconds=settings.login_failure_window_seconds),
            ),
            lifetime=timedelta(hours=settings.session_hours),
        )
    except TooManyAttemptsError as exc:
        return _login_form(
            request, next_url=target, status_code=429, email=email, error=exc.message,
            headers={"Retry-After": str(exc.retry_after)},
        )  # fmt: skip
    except AuthenticationError as exc:
        return _login_form(
            request, next_url=target, status_code=401, email=email, error=exc.message
        )
    response = see_other(target)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.cookie_value,
        max_age=int(timedelta(hours=settings.session_hours).total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, _console: ConsoleDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await web_sessions.sign_out(session, cookie)
    response = see_other("/login?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home(_console: ConsoleDep) -> Response:
    return see_other("/board")
