"""CSRF on every state-changing console and cookie-authenticated route, and stored XSS through
every email-derived field the console shows."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import (
    Attachment,
    Contact,
    Draft,
    Mailbox,
    Message,
    Note,
    QuarantinedMessage,
    TriageResult,
)
from communication_agent.models.enums import Role
from tests.api.test_auth_required import _all_routes
from tests.console.browser import sign_in
from tests.factories import Factory

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
ESCAPED = "&lt;img src=x onerror=alert(2)&gt;"


async def test_every_cookie_authenticated_write_needs_the_csrf_token(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory
) -> None:
    app, client = app_client
    admin = await factory.principal(Role.ADMIN)
    ticket = await factory.ticket()
    await sign_in(client, admin.user.email)
    routes = sorted((m, p) for m, p in set(_all_routes(app)) if m in MUTATING and p != "/login")
    assert len(routes) > 20
    for method, path in routes:
        concrete = path.format(
            **{
                k: v
                for k, v in {
                    "ticket_id": ticket.id,
                    "draft_id": 1,
                    "mailbox_id": ticket.mailbox_id,
                    "endpoint_id": 1,
                    "delivery_id": 1,
                }.items()
                if "{" + k + "}" in path
            }
        )
        for token in (None, "wrong-token"):
            headers = {"X-CSRF-Token": token} if token else {}
            form = {"csrf_token": token} if token else {}
            if path.startswith("/api/"):
                response = await client.request(method, concrete, json={}, headers=headers)
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["error"]["code"] == "csrf_failed"
            else:
                response = await client.request(method, concrete, data=form, headers=headers)
                assert response.status_code == 403, (method, path, response.text)
                assert "CSRF token" in response.text, (method, path)
    assert (await client.get("/board")).status_code == 200  # the session survived it all


async def test_hostile_text_in_every_mail_field_is_shown_escaped(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    """Subject, names, addresses, bodies, attachment names, triage, drafts, notes, mailbox
    errors and quarantine reasons all come from outside (mail or a model reading mail)."""
    admin = await factory.principal(Role.ADMIN)
    ticket = await factory.ticket(subject=f"Subject {XSS}", customer_name=f"Name {XSS}")
    message = await session.scalar(select(Message).where(Message.ticket_id == ticket.id))
    assert message is not None
    message.body_text = f"Body {XSS}\n> quoted {XSS}"
    message.new_content_text = f"New {XSS}"
    message.from_name = f"From {XSS}"
    contact = await session.get_one(Contact, ticket.contact_id)
    contact.email = "x@example.org"
    session.add(
        Attachment(
            message_id=message.id,
            filename=f"../../etc/{XSS}.pdf",
            content_type=f"application/{XSS}",
            size=10,
            part_index=1,
        )
    )
    session.add(
        TriageResult(
            ticket_id=ticket.id, category="billing", priority="high", summary=f"Summary {XSS}",
            flags=[f"flag {XSS}"], routing=f"Routing {XSS}",
        )
    )  # fmt: skip
    session.add(
        Draft(
            ticket_id=ticket.id, status="proposed", body=f"Draft {XSS}", author=f"model {XSS}",
            proposed_body=f"Proposal {XSS}", plan=[{"action": f"Step {XSS}", "reason": XSS}],
            citations=[f"message:{XSS}"], needs_info=[f"Info {XSS}"], review_flags=[XSS],
        )
    )  # fmt: skip
    session.add(Note(ticket_id=ticket.id, author_id=admin.user.id, body=f"Note {XSS}"))
    mailbox = await session.get_one(Mailbox, ticket.mailbox_id)
    mailbox.last_error = f"Error {XSS}"
    mailbox.token_state = "needs_reauth"
    mailbox.token_error = f"Token {XSS}"
    session.add(
        QuarantinedMessage(
            mailbox_id=mailbox.id, provider_message_id=f"id {XSS}", reason=f"Reason {XSS}",
            raw=b"x",
        )
    )  # fmt: skip
    await session.commit()
    await sign_in(client, admin.user.email)
    pages = {
        "/board": ["Subject", "Name"],
        f"/tickets/{ticket.id}": ["Subject", "Body", "New", "From", "Summary", "Routing",
                                  "Draft", "Proposal", "Step", "Info", "Note", "flag"],
        "/mailboxes": ["Error", "Token", "Reason", "id"],
    }  # fmt: skip
    for path, labels in pages.items():
        response = await client.get(path)
        assert response.status_code == 200, path
        html = response.text
        assert "<script>alert(1)" not in html, path
        assert "onerror=alert(2)>" not in html.replace(ESCAPED, ""), path
        for label in labels:  # each field is there, as text
            assert f"{label} &#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html, (path, label)
    ticket_page = (await client.get(f"/tickets/{ticket.id}")).text
    assert "../../etc/" in ticket_page  # the name is shown as text …
    assert 'download hx-boost="false">../../etc/' in ticket_page  # … and only as a download
