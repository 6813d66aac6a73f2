"""The ticket workspace: what it shows, how it shows untrusted mail, and the review actions."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Draft, Message, Note, OutboxEntry, Ticket
from communication_agent.models.enums import Role
from tests.console.browser import draft_version, page_csrf, sign_in
from tests.factories import Factory, Principal

HOSTILE_HTML = (
    '<p>Hello <img src="x" onerror="alert(1)"><script>alert(2)</script>'
    '<a href="javascript:alert(3)">click</a><svg onload="alert(4)"></svg>'
    '<div style="background:url(javascript:alert(5))">styled</div>'
    '<img src="https://tracker.example.com/pixel.gif"></p>'
)


async def _proposed_draft(client: httpx.AsyncClient, principal: Principal, ticket_id: int) -> int:
    """A model proposal, made by the offline model through the API."""
    response = await client.post(
        f"/api/v1/tickets/{ticket_id}/drafts", json={}, headers=principal.headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_workspace_shows_conversation_triage_draft_customer_and_timeline(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    earlier = await factory.ticket(customer_email="kim@example.org", subject="Old question")
    ticket = await factory.ticket(
        customer_email="kim2@example.org",
        subject="Charged twice",
        body="I was charged twice for order 1043.\n\n> On Monday you wrote:\n> Thanks for your order",
    )
    triaged = await client.post(f"/api/v1/tickets/{ticket.id}/triage", headers=operator.headers)
    assert triaged.status_code == 200, triaged.text
    await _proposed_draft(client, operator, ticket.id)
    await sign_in(client, operator.user.email)
    page = await client.get(f"/tickets/{ticket.id}")
    assert page.status_code == 200
    html = page.text
    assert "Charged twice" in html
    assert "I was charged twice for order 1043." in html
    assert 'id="triage-title"' in html
    assert "Confidence" in html
    assert 'name="body"' in html  # the draft editor
    assert "data-approve" in html
    assert "triage completed" in html or "triage" in html  # the timeline lists it
    assert earlier.subject not in html  # another customer's ticket is not "earlier tickets"


async def test_the_customer_panel_lists_their_other_tickets(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    first = await factory.ticket(customer_email="sam@example.org", subject="First problem")
    second = await factory.ticket(subject="Second problem")
    stored = await session.get_one(Ticket, second.id)
    stored.contact_id = first.contact_id
    await session.commit()
    await sign_in(client, operator.user.email)
    html = (await client.get(f"/tickets/{second.id}")).text
    assert f'href="/tickets/{first.id}"' in html
    assert "First problem" in html


async def test_hostile_mail_is_escaped_on_the_page_and_sandboxed_in_its_frame(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket(
        subject="<script>alert('subject')</script>", customer_name='<img src=x onerror="alert(9)">'
    )
    message = await session.scalar(select(Message).where(Message.ticket_id == ticket.id))
    assert message is not None
    message.body_html = HOSTILE_HTML
    await session.commit()
    await sign_in(client, operator.user.email)

    for path in ("/board", f"/tickets/{ticket.id}"):
        html = (await client.get(path)).text
        assert "<script>alert('subject')" not in html
        assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in html
        assert 'onerror="alert(9)"' not in html
    page = await client.get(f"/tickets/{ticket.id}")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f'src="/tickets/{ticket.id}/messages/{message.id}/html"' in page.text
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text

    frame = await client.get(f"/tickets/{ticket.id}/messages/{message.id}/html")
    assert frame.status_code == 200
    policy = frame.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "sandbox" in policy
    assert "img-src data:;" in policy  # remote images blocked
    for payload in ("<script", "onerror", "onload", "javascript:"):
        assert payload not in frame.text.lower(), payload
    assert "styled" in frame.text

    with_images = await client.get(f"/tickets/{ticket.id}/messages/{message.id}/html?images=1")
    assert "img-src data: https: http:;" in with_images.headers["content-security-policy"]


async def test_a_message_is_only_shown_under_its_own_ticket(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    mine = await factory.ticket()
    other = await factory.ticket()
    message = await session.scalar(select(Message).where(Message.ticket_id == other.id))
    assert message is not None
    await sign_in(client, operator.user.email)
    response = await client.get(f"/tickets/{mine.id}/messages/{message.id}/html")
    assert response.status_code == 404
    assert f"Ticket {mine.id} has no message {message.id}." in response.text


async def test_approving_sends_the_text_in_the_editor_and_shows_the_change(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    draft_id = await _proposed_draft(client, operator, ticket.id)
    await sign_in(client, operator.user.email)
    page = await client.get(f"/tickets/{ticket.id}")
    version = draft_version(page.text)
    csrf = await page_csrf(client, f"/tickets/{ticket.id}")
    draft = await session.get_one(Draft, draft_id)
    edited = draft.body + "\nP.S. We have added a voucher."

    preview = await client.post(
        f"/drafts/{draft_id}/diff", data={"csrf_token": csrf, "body": edited}
    )
    assert "<ins>" in preview.text
    assert "voucher" in preview.text

    approved = await client.post(
        f"/drafts/{draft_id}/approve",
        data={"csrf_token": csrf, "body": edited, "version": version},
    )
    assert approved.status_code == 303
    assert approved.headers["location"] == f"/tickets/{ticket.id}?done=approved"
    await session.rollback()  # end the read snapshot taken above
    stored = await session.get_one(Draft, draft_id, populate_existing=True)
    assert stored.status == "approved"
    assert stored.body == edited
    assert stored.approved_by_id == operator.user.id
    entry = await session.scalar(select(OutboxEntry).where(OutboxEntry.draft_id == draft_id))
    assert entry is not None
    after = await client.get(approved.headers["location"])
    assert "Approved: the reply is queued" in after.text


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    draft_id = await _proposed_draft(client, operator, ticket.id)
    await sign_in(client, operator.user.email)
    before = await session.get_one(Draft, draft_id)
    for token in (None, "forged"):
        data = {"body": "Pay to this account instead", "version": str(before.version)}
        if token:
            data["csrf_token"] = token
        refused = await client.post(f"/drafts/{draft_id}/approve", data=data)
        assert refused.status_code == 403
        assert "CSRF token" in refused.text
    await session.rollback()  # end the read snapshot taken above
    stored = await session.get_one(Draft, draft_id, populate_existing=True)
    assert stored.status == "proposed"
    assert stored.body == before.body


async def test_viewers_get_no_review_controls_and_are_refused_when_posting(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    draft_id = await _proposed_draft(client, operator, ticket.id)
    await sign_in(client, viewer.user.email)
    page = await client.get(f"/tickets/{ticket.id}")
    assert "data-approve" not in page.text
    assert 'name="body"' not in page.text
    csrf = await page_csrf(client, f"/tickets/{ticket.id}")
    draft = await session.get_one(Draft, draft_id)
    refused = await client.post(
        f"/drafts/{draft_id}/approve",
        data={"csrf_token": csrf, "body": draft.body, "version": draft.version},
    )
    assert refused.status_code == 403
    assert "needs the operator role" in refused.text
    await session.rollback()  # end the read snapshot taken above
    stored = await session.get_one(Draft, draft_id, populate_existing=True)
    assert stored.status == "proposed"


async def test_notes_assignment_and_an_empty_note(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    await sign_in(client, operator.user.email)
    csrf = await page_csrf(client, f"/tickets/{ticket.id}")
    empty = await client.post(f"/tickets/{ticket.id}/notes", data={"csrf_token": csrf, "body": " "})
    assert empty.status_code == 422
    assert "The note is empty" in empty.text
    noted = await client.post(
        f"/tickets/{ticket.id}/notes", data={"csrf_token": csrf, "body": "Called them."}
    )
    assert noted.status_code == 303
    assert (await session.scalar(select(Note.body).where(Note.ticket_id == ticket.id))) == (
        "Called them."
    )
    taken = await client.post(
        f"/tickets/{ticket.id}/assign",
        data={"csrf_token": csrf, "assignee": "me", "version": ticket.version},
    )
    assert taken.status_code == 303
    await session.rollback()  # end the read snapshot taken above
    stored = await session.get_one(Ticket, ticket.id, populate_existing=True)
    assert stored.assignee_id == operator.user.id
    page = (await client.get(taken.headers["location"])).text
    assert "Assignment saved." in page
    assert "Called them." in page


async def test_regenerating_with_an_instruction_makes_a_new_draft(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    first = await _proposed_draft(client, operator, ticket.id)
    await sign_in(client, operator.user.email)
    csrf = await page_csrf(client, f"/tickets/{ticket.id}")
    response = await client.post(
        f"/tickets/{ticket.id}/regenerate",
        data={"csrf_token": csrf, "instruction": "Be brief."},
    )
    assert response.status_code == 303
    newest = await session.scalar(
        select(Draft).where(Draft.ticket_id == ticket.id).order_by(Draft.id.desc()).limit(1)
    )
    assert newest is not None
    assert newest.id != first
    assert newest.instruction == "Be brief."
