"""The webhook admin API, and webhooks end to end through the running app: an endpoint added
over the API receives signed events from the app's own delivery loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import WebhookDelivery
from communication_agent.models.enums import Role
from tests.api.test_auth_required import _all_routes, _concrete
from tests.conftest import running_app
from tests.factories import Factory, Principal
from tests.webhook_receiver import Fault, WebhookReceiver, verify

SessionMaker = async_sessionmaker[AsyncSession]
WEBHOOKS = "/api/v1/webhooks"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
async def fast_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its delivery loop polling often and retrying quickly."""
    quick = settings.model_copy(
        update={"webhook_interval_seconds": 0.05, "webhook_retry_base_seconds": 0.05}
    )
    async with running_app(quick) as pair:
        yield pair


async def _wait_for(receiver: WebhookReceiver, accepted: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while len(receiver.accepted) < accepted:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(receiver.accepted)} of {accepted} accepted: {receiver.received}")
        await asyncio.sleep(0.02)


async def _wait_for_delivered(
    client: httpx.AsyncClient, admin: Principal, count: int, seconds: float = 15
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        listed = await client.get(
            f"{WEBHOOKS}/deliveries", params={"status": "delivered"}, headers=admin.headers
        )
        if len(listed.json()["items"]) >= count:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{len(listed.json()['items'])} of {count} recorded as delivered")
        await asyncio.sleep(0.02)


async def _add(
    client: httpx.AsyncClient, admin: Principal, url: str, **fields: object
) -> dict[str, object]:
    response = await client.post(WEBHOOKS, json={"url": url, **fields}, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def _move(
    client: httpx.AsyncClient, operator: Principal, ticket_id: int, state: str
) -> httpx.Response:
    current = (await client.get(f"/api/v1/tickets/{ticket_id}", headers=operator.headers)).json()
    return await client.post(
        f"/api/v1/tickets/{ticket_id}/state",
        json={"state": state, "version": current["version"], "reason": "checked"},
        headers=operator.headers,
    )


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
async def test_only_admins_may_use_any_webhook_route(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory, role: Role
) -> None:
    app, client = app_client
    principal = await factory.principal(role)
    routes = [(m, p) for m, p in _all_routes(app) if p.startswith(WEBHOOKS) and m != "HEAD"]
    assert len(routes) == 7
    for method, path in routes:
        response = await client.request(
            method, _concrete(path), json={"url": "https://x.test/"}, headers=principal.headers
        )
        assert response.status_code == 403, (method, path, response.text)
        assert "needs the admin role" in response.json()["error"]["message"]


async def test_an_endpoint_added_over_the_api_gets_signed_state_changes_from_the_app(
    fast_app: tuple[FastAPI, httpx.AsyncClient],
    factory: Factory,
    sessionmaker: SessionMaker,
    receiver: WebhookReceiver,
) -> None:
    _app, client = fast_app
    admin, operator = await factory.principal(Role.ADMIN), await factory.principal()
    created = await _add(client, admin, receiver.url(), description="team chat")
    secret = str(created["secret"])
    assert secret.startswith("whsec_")
    assert created["secret_hint"] == secret[:10]
    assert created["events"] == ["ticket.state_changed", "draft.ready", "reply.sent"]
    receiver.secret = secret  # the receiver refuses (401) anything not signed with it

    listed = await client.get(WEBHOOKS, headers=admin.headers)
    assert listed.status_code == 200
    assert secret not in listed.text  # shown once, at creation
    [endpoint] = listed.json()
    assert (endpoint["id"], endpoint["description"]) == (created["id"], "team chat")

    ticket = await factory.ticket()
    assert (await _move(client, operator, ticket.id, "NEEDS_ACTION")).status_code == 200
    await _wait_for(receiver, 1)
    [request] = receiver.received
    assert verify(secret, request.headers, request.body)
    event = request.json()
    assert event["type"] == "ticket.state_changed"
    assert event["data"]["ticket_id"] == ticket.id
    assert (event["data"]["from"], event["data"]["to"]) == ("NEW", "NEEDS_ACTION")
    assert event["data"]["actor"].startswith(f"token:{operator.user.email}#")
    assert event["data"]["actor_user_id"] == operator.user.id

    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
    page = (await client.get(f"{WEBHOOKS}/deliveries", headers=admin.headers)).json()
    [delivery] = page["items"]
    assert (delivery["status"], delivery["attempts"], delivery["event_id"]) == (
        "delivered",
        1,
        event["id"],
    )
    detail = await client.get(f"{WEBHOOKS}/deliveries/{delivery['id']}", headers=admin.headers)
    assert detail.json()["payload"] == event
    [attempt] = detail.json()["history"]
    assert attempt["status_code"] == 204
    counts = (await client.get(WEBHOOKS, headers=admin.headers)).json()[0]["deliveries"]
    assert counts == {"pending": 0, "delivering": 0, "delivered": 1, "failed": 0}


async def test_a_refused_change_sends_nothing(
    fast_app: tuple[FastAPI, httpx.AsyncClient],
    factory: Factory,
    sessionmaker: SessionMaker,
    receiver: WebhookReceiver,
) -> None:
    _app, client = fast_app
    admin, operator = await factory.principal(Role.ADMIN), await factory.principal()
    await _add(client, admin, receiver.url())
    ticket = await factory.ticket()
    stale = await client.post(
        f"/api/v1/tickets/{ticket.id}/state",
        json={"state": "DONE", "version": ticket.version + 5},
        headers=operator.headers,
    )
    assert stale.status_code == 409
    backwards = await _move(client, operator, ticket.id, "NEW")
    assert backwards.status_code == 409
    await asyncio.sleep(0.3)
    assert receiver.received == []
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


async def test_disable_redeliver_and_delete(
    fast_app: tuple[FastAPI, httpx.AsyncClient], factory: Factory, receiver: WebhookReceiver
) -> None:
    _app, client = fast_app
    admin, operator = await factory.principal(Role.ADMIN), await factory.principal()
    created = await _add(client, admin, receiver.url(), events=["ticket.state_changed"])
    endpoint = f"{WEBHOOKS}/{created['id']}"
    ticket = await factory.ticket()

    off = await client.patch(endpoint, json={"is_active": False}, headers=admin.headers)
    assert (off.status_code, off.json()["is_active"]) == (200, False)
    await _move(client, operator, ticket.id, "NEEDS_ACTION")  # nothing queued for it
    on = await client.patch(
        endpoint, json={"is_active": True, "description": "ops"}, headers=admin.headers
    )
    assert (on.json()["is_active"], on.json()["description"]) == (True, "ops")
    receiver.inject(Fault(status=500))
    await _move(client, operator, ticket.id, "DONE")
    await _wait_for(receiver, 1)
    assert [r.answered for r in receiver.received] == [500, 204]

    [delivery] = (await client.get(f"{WEBHOOKS}/deliveries", headers=admin.headers)).json()["items"]
    again = await client.post(
        f"{WEBHOOKS}/deliveries/{delivery['id']}/redeliver", headers=admin.headers
    )
    assert again.status_code == 201, again.text
    assert again.json()["event_id"] == delivery["event_id"]
    assert again.json()["id"] != delivery["id"]
    await _wait_for(receiver, 2)
    first, second = receiver.accepted
    assert first.json()["id"] == second.json()["id"]  # the receiver can tell it is a repeat
    # The receiver answers before the sender records the answer: wait for the record too.
    await _wait_for_delivered(client, admin, 2)

    filtered = await client.get(
        f"{WEBHOOKS}/deliveries",
        params={"status": "delivered", "endpoint_id": str(created["id"]), "limit": 1},
        headers=admin.headers,
    )
    assert len(filtered.json()["items"]) == 1
    assert filtered.json()["next_cursor"] is not None

    gone = await client.delete(endpoint, headers=admin.headers)
    assert gone.status_code == 204
    assert (await client.get(WEBHOOKS, headers=admin.headers)).json() == []
    listed = await client.get(f"{WEBHOOKS}/deliveries", headers=admin.headers)
    assert listed.json()["items"] == []  # its deliveries went with it
    assert (await client.delete(endpoint, headers=admin.headers)).status_code == 404


async def test_bad_input_is_refused_with_what_to_change(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    admin = await factory.principal(Role.ADMIN)
    for url in (
        "ftp://files.example.com/",
        "hooks.example.com/x",
        "http://[::1/x",
        "http://h:99999/",
    ):
        response = await client.post(WEBHOOKS, json={"url": url}, headers=admin.headers)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
        assert "is not an http(s) URL" in response.json()["error"]["message"]
    unknown = await client.post(
        WEBHOOKS,
        json={"url": "https://x.test/", "events": ["ticket.deleted"]},
        headers=admin.headers,
    )
    assert unknown.status_code == 422
    empty = await client.post(
        WEBHOOKS, json={"url": "https://x.test/", "events": []}, headers=admin.headers
    )
    assert empty.status_code == 422
    missing = await client.post(f"{WEBHOOKS}/deliveries/7/redeliver", headers=admin.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Webhook delivery 7 does not exist."


async def test_a_queued_delivery_cannot_be_redelivered(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """The plain app polls every 2 s: the event is still queued when we ask."""
    admin, operator = await factory.principal(Role.ADMIN), await factory.principal()
    await _add(client, admin, "http://127.0.0.1:9/never")
    ticket = await factory.ticket()
    await _move(client, operator, ticket.id, "DONE")
    [delivery] = (await client.get(f"{WEBHOOKS}/deliveries", headers=admin.headers)).json()["items"]
    refused = await client.post(
        f"{WEBHOOKS}/deliveries/{delivery['id']}/redeliver", headers=admin.headers
    )
    assert refused.status_code == 409
    assert "it will be attempted anyway" in refused.json()["error"]["message"]


async def test_changes_are_in_the_activity_log_without_the_url_path(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """A chat tool's webhook URL holds its token in the path: the log, which viewers read,
    names the host only."""
    admin, viewer = await factory.principal(Role.ADMIN), await factory.principal(Role.VIEWER)
    created = await _add(client, admin, "https://hooks.chat.example/services/T0/B0/SeCrEtToKeN")
    await client.patch(
        f"{WEBHOOKS}/{created['id']}", json={"events": ["reply.sent"]}, headers=admin.headers
    )
    await client.delete(f"{WEBHOOKS}/{created['id']}", headers=admin.headers)
    log = await client.get("/api/v1/activity", headers=viewer.headers)
    entries = [e for e in log.json()["items"] if e["action"].startswith("webhook.")]
    assert [e["action"] for e in entries] == [
        "webhook.deleted",
        "webhook.updated",
        "webhook.created",
    ]
    assert {e["details"]["host"] for e in entries} == {"hooks.chat.example"}
    assert "SeCrEtToKeN" not in log.text
    assert str(created["secret"]) not in log.text
