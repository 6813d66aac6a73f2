"""Every route by every role: who may call what, checked by calling it.

`MINIMUM_ROLE` classifies every route the app serves; a route added without a line here fails
the first test, so nobody ships a route whose audience was never decided.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from communication_agent.models.enums import Role
from tests.api.test_auth_required import _all_routes
from tests.console.browser import page_csrf, sign_in
from tests.factories import Factory

VIEW, OPER, ADMN = Role.VIEWER, Role.OPERATOR, Role.ADMIN
PUBLIC_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("POST", "/login")}
MINIMUM_ROLE: dict[tuple[str, str], Role] = {
    # JSON API: everyone reads, operators act, admins connect mailboxes.
    ("GET", "/api/v1/activity"): VIEW,
    ("GET", "/api/v1/drafts/{draft_id}"): VIEW,
    ("GET", "/api/v1/drafts/{draft_id}/versions"): VIEW,
    ("GET", "/api/v1/mailboxes"): VIEW,
    ("GET", "/api/v1/mailboxes/{mailbox_id}/quarantine"): VIEW,
    ("GET", "/api/v1/me"): VIEW,
    ("GET", "/api/v1/messages/{message_id}/attachments/{attachment_id}"): VIEW,
    ("GET", "/api/v1/reports/summary"): VIEW,
    ("GET", "/api/v1/reports/summary.csv"): VIEW,
    ("GET", "/api/v1/tickets"): VIEW,
    ("GET", "/api/v1/tickets/{ticket_id}"): VIEW,
    ("GET", "/api/v1/tickets/{ticket_id}/activity"): VIEW,
    ("GET", "/api/v1/tickets/{ticket_id}/model-calls"): VIEW,
    ("GET", "/docs"): VIEW,
    ("GET", "/openapi.json"): VIEW,
    ("PATCH", "/api/v1/drafts/{draft_id}"): OPER,
    ("POST", "/api/v1/drafts/{draft_id}/approve"): OPER,
    ("POST", "/api/v1/drafts/{draft_id}/discard"): OPER,
    ("POST", "/api/v1/drafts/{draft_id}/recall"): OPER,
    ("POST", "/api/v1/drafts/{draft_id}/retry"): OPER,
    ("POST", "/api/v1/mailboxes/{mailbox_id}/sync"): OPER,
    ("POST", "/api/v1/tickets/{ticket_id}/assign"): OPER,
    ("POST", "/api/v1/tickets/{ticket_id}/drafts"): OPER,
    ("POST", "/api/v1/tickets/{ticket_id}/notes"): OPER,
    ("POST", "/api/v1/tickets/{ticket_id}/state"): OPER,
    ("POST", "/api/v1/tickets/{ticket_id}/triage"): OPER,
    ("GET", "/metrics"): ADMN,  # or a scraper with COMMAGENT_METRICS_TOKEN
    ("GET", "/oauth/gmail/start"): ADMN,
    ("GET", "/oauth/gmail/callback"): ADMN,
    ("GET", "/api/v1/webhooks"): ADMN,
    ("POST", "/api/v1/webhooks"): ADMN,
    ("PATCH", "/api/v1/webhooks/{endpoint_id}"): ADMN,
    ("DELETE", "/api/v1/webhooks/{endpoint_id}"): ADMN,
    ("GET", "/api/v1/webhooks/deliveries"): ADMN,
    ("GET", "/api/v1/webhooks/deliveries/{delivery_id}"): ADMN,
    ("POST", "/api/v1/webhooks/deliveries/{delivery_id}/redeliver"): ADMN,
    # The console: everyone reads, operators act, admins run mailboxes.
    ("GET", "/"): VIEW,
    ("GET", "/board"): VIEW,
    ("GET", "/board/columns/{state}"): VIEW,
    ("GET", "/reports"): VIEW,
    ("GET", "/tickets/{ticket_id}"): VIEW,
    ("GET", "/tickets/{ticket_id}/messages/{message_id}/html"): VIEW,
    ("GET", "/mailboxes"): ADMN,
    ("POST", "/logout"): VIEW,
    ("POST", "/drafts/{draft_id}/approve"): OPER,
    ("POST", "/drafts/{draft_id}/diff"): OPER,
    ("POST", "/drafts/{draft_id}/discard"): OPER,
    ("POST", "/drafts/{draft_id}/recall"): OPER,
    ("POST", "/drafts/{draft_id}/retry"): OPER,
    ("POST", "/drafts/{draft_id}/save"): OPER,
    ("POST", "/tickets/{ticket_id}/assign"): OPER,
    ("POST", "/tickets/{ticket_id}/drafts"): OPER,
    ("POST", "/tickets/{ticket_id}/notes"): OPER,
    ("POST", "/tickets/{ticket_id}/regenerate"): OPER,
    ("POST", "/tickets/{ticket_id}/state"): OPER,
    ("POST", "/tickets/{ticket_id}/triage"): OPER,
    ("POST", "/mailboxes/{mailbox_id}/sync"): ADMN,
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted({(m, p) for m, p in _all_routes(app) if m != "HEAD"})


def test_every_route_has_a_decided_audience(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _client = app_client
    unclassified = [
        route for route in _routes(app) if route not in MINIMUM_ROLE and route not in PUBLIC_ROUTES
    ]
    assert not unclassified, f"classify these routes in MINIMUM_ROLE: {unclassified}"
    gone = [route for route in MINIMUM_ROLE if route not in _routes(app)]
    assert not gone, f"routes no longer served: {gone}"


@pytest.mark.parametrize("role", [VIEW, OPER, ADMN])
async def test_each_role_gets_exactly_what_its_rank_allows(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory, role: Role
) -> None:
    app, client = app_client
    principal = await factory.principal(role)
    ticket = await factory.ticket()
    ids = {
        "ticket_id": str(ticket.id),
        "draft_id": "1",
        "mailbox_id": str(ticket.mailbox_id),
        "message_id": "1",
        "attachment_id": "1",
        "state": "NEW",
        "endpoint_id": "1",
        "delivery_id": "1",
    }
    await sign_in(client, principal.user.email)
    csrf = await page_csrf(client)
    # Signing out last: it ends the session the console routes use.
    routes = sorted(_routes(app), key=lambda r: r == ("POST", "/logout"))
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        concrete = path.format(**{k: v for k, v in ids.items() if "{" + k + "}" in path})
        is_api = path.startswith(("/api/", "/oauth/", "/docs", "/openapi"))
        if is_api:
            response = await client.request(
                method,
                concrete,
                json={},
                headers={**principal.headers, "Cookie": ""},
                follow_redirects=False,
            )
        else:
            response = await client.request(
                method, concrete, data={"csrf_token": csrf}, follow_redirects=False
            )
        allowed = role.includes(MINIMUM_ROLE[(method, path)])
        where = (role.value, method, path, response.status_code, response.text[:200])
        if allowed:
            assert response.status_code not in {401, 403, 500}, where
            sent_to_sign_in = response.headers.get("location", "").startswith("/login?next=")
            assert not sent_to_sign_in, where
        else:
            assert response.status_code == 403, where
            needed = MINIMUM_ROLE[(method, path)].value
            assert f"needs the {needed} role" in response.text, where
        checked += 1
    assert checked == len(routes) - len(PUBLIC_ROUTES)
