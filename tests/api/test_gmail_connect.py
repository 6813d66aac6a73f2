"""Connecting Gmail through the OAuth routes, against the loopback Google endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from communication_agent.core.config import Settings
from communication_agent.models.enums import Role
from tests.adapters.test_gmail_sync import gmail_settings
from tests.conftest import running_app
from tests.console.browser import sign_in
from tests.factories import Factory
from tests.gmail_server import GmailTestServer


@pytest.fixture
def gmail() -> Iterator[GmailTestServer]:
    with GmailTestServer() as server:
        yield server


@pytest.fixture
async def gmail_client(
    settings: Settings, gmail: GmailTestServer
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(gmail_settings(settings, gmail)) as (_app, client):
        yield client


async def _consent(gmail: GmailTestServer, consent_url: str) -> str:
    """Play the admin's browser at Google: returns where Google redirects back to."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(consent_url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def test_an_admin_connects_gmail_and_the_mailbox_syncs(
    gmail_client: httpx.AsyncClient, gmail: GmailTestServer, factory: Factory
) -> None:
    admin = await factory.principal(Role.ADMIN)
    start = await gmail_client.get("/oauth/gmail/start", headers=admin.headers)
    assert start.status_code == 303
    consent_url = start.headers["location"]
    assert consent_url.startswith(gmail.auth_url)
    query = parse_qs(urlsplit(consent_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["access_type"] == ["offline"]
    assert "gmail.send" in query["scope"][0]
    assert "gmail.modify" not in query["scope"][0]
    cookie = start.cookies.get("commagent_gmail_oauth")
    assert cookie is not None
    assert "httponly" in start.headers["set-cookie"].lower()

    back = await _consent(gmail, consent_url)
    callback = urlsplit(back)
    assert callback.path == "/oauth/gmail/callback"
    gmail_client.cookies.clear()
    connected = await gmail_client.get(
        f"{callback.path}?{callback.query}",
        headers={**admin.headers, "Cookie": f"commagent_gmail_oauth={cookie}"},
    )
    assert connected.status_code == 200, connected.text
    body = connected.json()
    assert (body["address"], body["provider"], body["token_state"]) == (
        gmail.state.address,
        "gmail",
        "ok",
    )

    gmail.add_message(b"From: a@example.org\nSubject: hi\nMessage-ID: <c1@x>\n\nhello")
    synced = await gmail_client.post(f"/api/v1/mailboxes/{body['id']}/sync", headers=admin.headers)
    assert synced.status_code == 200, synced.text
    assert synced.json()["new_tickets"] == 1


async def test_forged_replayed_or_denied_callbacks_change_nothing(
    gmail_client: httpx.AsyncClient, gmail: GmailTestServer, factory: Factory
) -> None:
    admin, other_admin = await factory.principal(Role.ADMIN), await factory.principal(Role.ADMIN)
    start = await gmail_client.get("/oauth/gmail/start", headers=admin.headers)
    cookie = start.cookies["commagent_gmail_oauth"]
    gmail_client.cookies.clear()  # each attempt below sends exactly the cookies it names
    callback = urlsplit(await _consent(gmail, start.headers["location"]))
    params = parse_qs(callback.query)
    url = callback.path

    async def attempt(
        query: dict[str, str], headers: dict[str, str], cookies: dict[str, str]
    ) -> httpx.Response:
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        return await gmail_client.get(url, params=query, headers={**headers, **sent})

    code, state = params["code"][0], params["state"][0]
    good_cookie = {"commagent_gmail_oauth": cookie}
    cases = [
        ({"code": code, "state": state + "x"}, admin.headers, good_cookie, "not valid"),
        ({"code": code, "state": state}, admin.headers, {}, "cookie is missing"),
        (
            {"code": code, "state": state},
            other_admin.headers,
            good_cookie,
            "another connection attempt",
        ),
        (
            {"error": "access_denied", "state": state},
            admin.headers,
            good_cookie,
            "did not grant access",
        ),
        ({"state": state}, admin.headers, good_cookie, "lacks `code`"),
    ]
    for query, headers, cookies, message in cases:
        response = await attempt(query, headers, cookies)
        assert response.status_code == 422, (message, response.text)
        assert message in response.json()["error"]["message"]
    listed = await gmail_client.get("/api/v1/mailboxes", headers=admin.headers)
    assert listed.json() == []
    ok = await attempt({"code": code, "state": state}, admin.headers, good_cookie)
    assert ok.status_code == 200
    replay = await attempt({"code": code, "state": state}, admin.headers, good_cookie)
    assert replay.status_code == 422  # the code was used up
    assert "Connecting Gmail failed" in replay.json()["error"]["message"]


async def test_only_admins_connect_and_missing_configuration_is_explained(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    assert (await client.get("/oauth/gmail/start", headers=operator.headers)).status_code == 403
    admin = await factory.principal(Role.ADMIN)
    unconfigured = await client.get("/oauth/gmail/start", headers=admin.headers)
    assert unconfigured.status_code == 503
    assert "COMMAGENT_GOOGLE_CLIENT_ID" in unconfigured.json()["error"]["message"]


async def test_the_console_connect_button_walks_the_flow_and_lands_on_the_mailboxes_page(
    gmail_client: httpx.AsyncClient, gmail: GmailTestServer, factory: Factory
) -> None:
    """In a signed-in browser: the session cookie authenticates, errors and success are pages."""
    admin = await factory.principal(Role.ADMIN)
    await sign_in(gmail_client, admin.user.email)
    html = {"Accept": "text/html,application/xhtml+xml"}
    page = await gmail_client.get("/mailboxes")
    assert 'href="/oauth/gmail/start"' in page.text
    start = await gmail_client.get("/oauth/gmail/start", headers=html)
    assert start.status_code == 303
    back = urlsplit(await _consent(gmail, start.headers["location"]))
    replayed_without_state = await gmail_client.get(f"{back.path}?code=x", headers=html)
    assert replayed_without_state.status_code in {400, 422}
    assert "<html" in replayed_without_state.text
    connected = await gmail_client.get(f"{back.path}?{back.query}", headers=html)
    assert connected.status_code == 303
    assert connected.headers["location"] == "/mailboxes?done=connected"
    landed = await gmail_client.get(connected.headers["location"])
    assert "Gmail is connected" in landed.text
    assert gmail.state.address in landed.text
