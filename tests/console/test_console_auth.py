"""Console sign-in: session cookies, the login CSRF token, brute-force limit, fixation, sign-out,
and the same cookie used against the JSON API (with its CSRF header)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.config import Settings
from communication_agent.models import User, WebSession
from communication_agent.models.enums import Role
from tests.conftest import running_app
from tests.console.browser import page_csrf, sign_in
from tests.factories import PASSWORD, Factory


async def test_anonymous_pages_redirect_to_sign_in_and_come_back(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    anonymous = await client.get("/board?priority=high")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=%2Fboard%3Fpriority%3Dhigh"
    signed_in = await sign_in(client, principal.user.email, next_url="/board?priority=high")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/board?priority=high"
    board = await client.get("/board")
    assert board.status_code == 200
    assert principal.user.email in board.text


async def test_session_cookie_is_httponly_samesite_and_only_a_digest_is_stored(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    principal = await factory.principal(Role.VIEWER)
    response = await sign_in(client, principal.user.email)
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "ca_session=" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; see the TLS test below
    value = cookie.split("ca_session=", 1)[1].split(";", 1)[0]
    stored = (await session.scalars(select(WebSession.token_digest))).all()
    assert len(stored) == 1
    assert value not in stored[0]


@pytest.mark.parametrize("configured", [None, True])
async def test_cookies_are_secure_over_tls(
    settings: Settings, factory: Factory, configured: bool | None
) -> None:
    """Over HTTPS (as seen through --proxy-headers) or when configured, cookies are Secure."""
    principal = await factory.principal(Role.VIEWER)
    async with running_app(settings.model_copy(update={"cookie_secure": configured})) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            response = await sign_in(client, principal.user.email)
    assert response.status_code == 303
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session_cookie = next(c for c in cookies if "ca_session=" in c)
    assert "Secure" in session_cookie


async def test_wrong_password_is_refused_with_a_message_and_no_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    response = await sign_in(client, principal.user.email, password="not it")
    assert response.status_code == 401
    assert "Unknown email or wrong password." in response.text
    assert "ca_session" not in client.cookies
    assert (await client.get("/board")).status_code == 303


async def test_sign_in_form_without_its_token_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    response = await client.post(
        "/login", data={"email": principal.user.email, "password": PASSWORD, "csrf_token": "x"}
    )
    assert response.status_code == 403
    assert "expired" in response.text
    assert "ca_session" not in client.cookies


async def test_repeated_failures_lock_the_email_even_for_the_right_password(
    settings: Settings, factory: Factory
) -> None:
    limited = settings.model_copy(update={"login_max_failures": 3})
    principal = await factory.principal(Role.OPERATOR)
    async with running_app(limited) as (_app, client):
        for _ in range(3):
            assert (await sign_in(client, principal.user.email, "wrong")).status_code == 401
        locked = await sign_in(client, principal.user.email)
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.text
        assert int(locked.headers["retry-after"]) > 0
        assert "ca_session" not in client.cookies
        # Another account from elsewhere is unaffected by this email's lock.
        other = await factory.principal(Role.OPERATOR)
        assert (await sign_in(client, other.user.email)).status_code == 303


async def test_a_planted_session_id_never_becomes_authenticated(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """Session fixation: the attacker's cookie value stays worthless after the victim signs in."""
    principal = await factory.principal(Role.OPERATOR)
    client.cookies.set("ca_session", "attacker-chosen-value")
    response = await sign_in(client, principal.user.email)
    issued = response.cookies.get("ca_session")
    assert issued
    assert issued != "attacker-chosen-value"
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver"
    ) as attacker:
        attacker.cookies.set("ca_session", "attacker-chosen-value")
        assert (await attacker.get("/board")).status_code == 303
    assert (await client.get("/board")).status_code == 200  # the victim's own session works


async def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    await sign_in(client, principal.user.email)
    stolen = client.cookies.get("ca_session")
    csrf = await page_csrf(client)
    refused = await client.post("/logout")
    assert refused.status_code == 403  # no CSRF token: a cross-site form cannot sign you out
    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/login?signed_out=1"
    async with httpx.AsyncClient(
        transport=client._transport, base_url="http://testserver"
    ) as thief:
        thief.cookies.set("ca_session", stolen or "")
        assert (await thief.get("/board")).status_code == 303


async def test_open_redirects_are_refused_after_sign_in(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    response = await sign_in(client, principal.user.email, next_url="//evil.example/phish")
    assert response.headers["location"] == "/board"


@pytest.mark.parametrize("with_token", [False, True])
async def test_the_api_accepts_the_console_cookie_but_writes_need_the_csrf_header(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory, with_token: bool
) -> None:
    _app, client = app_client
    principal = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    await sign_in(client, principal.user.email)
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == principal.user.email
    headers = {"X-CSRF-Token": await page_csrf(client)} if with_token else {}
    note = await client.post(
        f"/api/v1/tickets/{ticket.id}/notes", json={"body": "checked"}, headers=headers
    )
    if with_token:
        assert note.status_code == 201, note.text
    else:
        assert note.status_code == 403
        assert note.json()["error"]["code"] == "csrf_failed"


async def test_deactivating_a_user_ends_their_console_session_at_once(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    principal = await factory.principal(Role.OPERATOR)
    await sign_in(client, principal.user.email)
    assert (await client.get("/board")).status_code == 200
    user = await session.get_one(User, principal.user.id)
    user.is_active = False
    await session.commit()
    assert (await client.get("/board")).status_code == 303
    assert (await client.get("/api/v1/me")).status_code == 401
