"""The mailboxes page: admins only; sync health, reconnect prompt, sync now, quarantine."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Mailbox, Message, QuarantinedMessage
from communication_agent.models.enums import Role
from communication_agent.services import mailboxes
from tests.console.browser import page_csrf, sign_in
from tests.factories import TEST_ACTOR, Factory


async def test_only_admins_see_the_mailboxes_page(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    await sign_in(client, operator.user.email)
    board = await client.get("/board")
    assert 'href="/mailboxes"' not in board.text
    refused = await client.get("/mailboxes")
    assert refused.status_code == 403
    assert "needs the admin role" in refused.text


async def test_a_mailbox_that_needs_reauth_says_so_with_its_error_and_quarantine(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession
) -> None:
    admin = await factory.principal(Role.ADMIN)
    box = await factory.mailbox(name="sales")
    stored = await session.get_one(Mailbox, box.id)
    stored.token_state = "needs_reauth"
    stored.token_error = "invalid_grant: Token has been expired or revoked."
    stored.last_error = "Gmail refused the stored authorisation"
    stored.consecutive_errors = 4
    session.add(
        QuarantinedMessage(
            mailbox_id=box.id, provider_message_id="m-17", reason="unparseable: bad MIME", raw=b"x"
        )
    )
    await session.commit()
    await sign_in(client, admin.user.email)
    page = (await client.get("/mailboxes")).text
    assert "sales" in page
    assert "no longer accepts this mailbox's authorisation" in page
    assert "invalid_grant: Token has been expired or revoked." in page
    assert "Gmail refused the stored authorisation" in page
    assert "m-17" in page
    assert "unparseable: bad MIME" in page
    assert "COMMAGENT_GOOGLE_CLIENT_ID" in page  # how to enable the Connect button


async def test_sync_now_brings_in_new_mail(
    client: httpx.AsyncClient, factory: Factory, session: AsyncSession, tmp_path: Path
) -> None:
    admin = await factory.principal(Role.ADMIN)
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "one.eml").write_bytes(
        b"From: Rita <rita@example.org>\r\nTo: help@company.example\r\nSubject: Broken zip\r\n"
        b"Message-ID: <one@example.org>\r\n\r\nThe zipper broke on day one.\r\n"
    )
    box = await mailboxes.ensure_local_mailbox(
        session, TEST_ACTOR, name="help", path=folder, address="help@company.example"
    )
    await session.commit()
    await sign_in(client, admin.user.email)
    csrf = await page_csrf(client, "/mailboxes")
    synced = await client.post(f"/mailboxes/{box.id}/sync", data={"csrf_token": csrf})
    assert synced.status_code == 303
    assert synced.headers["location"] == "/mailboxes?done=synced"
    count = await session.scalar(
        select(func.count()).select_from(Message).where(Message.mailbox_id == box.id)
    )
    assert count == 1
    page = (await client.get(synced.headers["location"])).text
    assert "Sync finished" in page
    refused = await client.post(f"/mailboxes/{box.id}/sync")
    assert refused.status_code == 403
