from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import Mailbox
from communication_agent.models.enums import Role
from tests.factories import Factory
from tests.mail import raw_email

API = "/api/v1/mailboxes"


async def _local_mailbox(
    factory: Factory, sessionmaker: async_sessionmaker[AsyncSession], folder: Path
) -> int:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        await session.commit()
    return mailbox.id


async def test_sync_now_reports_counts_and_health(
    client: httpx.AsyncClient,
    factory: Factory,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    (tmp_path / "1.eml").write_bytes(raw_email(message_id="<a@x>"))
    (tmp_path / "2.eml").write_bytes(raw_email(message_id="<b@x>", in_reply_to="<a@x>"))
    (tmp_path / "3.eml").write_bytes(b"Subject: no sender\n\nx")
    mailbox_id = await _local_mailbox(factory, sessionmaker, tmp_path)

    response = await client.post(f"{API}/{mailbox_id}/sync", headers=operator.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fetched": 3, "new_messages": 2, "new_tickets": 1, "threaded": 1,
        "duplicates": 0, "quarantined": 1, "errors": 0, "ignored": 0,
    }  # fmt: skip
    again = await client.post(f"{API}/{mailbox_id}/sync", headers=operator.headers)
    assert again.json()["duplicates"] == 3

    [health] = (await client.get(API, headers=operator.headers)).json()
    assert health["last_sync_succeeded_at"] is not None
    assert (health["consecutive_errors"], health["quarantined"], health["syncing"]) == (0, 1, False)
    quarantine = (
        await client.get(f"{API}/{mailbox_id}/quarantine", headers=operator.headers)
    ).json()
    assert [q["reason"] for q in quarantine["items"]] == ["no sender address in From or Sender"]
    assert quarantine["items"][0]["provider_message_id"] == "3.eml"


async def test_sync_errors_are_clear(
    client: httpx.AsyncClient,
    factory: Factory,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    operator = await factory.principal(Role.OPERATOR)
    viewer = await factory.principal(Role.VIEWER)
    missing = await client.post(f"{API}/999/sync", headers=operator.headers)
    assert missing.status_code == 404
    mailbox_id = await _local_mailbox(factory, sessionmaker, tmp_path / "gone")
    failed = await client.post(f"{API}/{mailbox_id}/sync", headers=operator.headers)
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "sync_failed"
    assert "does not exist" in failed.json()["error"]["message"]
    [health] = (await client.get(API, headers=viewer.headers)).json()
    assert health["consecutive_errors"] == 1
    assert "does not exist" in health["last_error"]
    assert (
        await client.post(f"{API}/{mailbox_id}/sync", headers=viewer.headers)
    ).status_code == 403


async def test_attachments_are_listed_and_downloaded_on_demand(
    client: httpx.AsyncClient,
    factory: Factory,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    operator = await factory.principal(Role.OPERATOR)
    pdf = b"%PDF-1.4 fake invoice \x00\xff bytes"
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["Subject"] = "Invoice attached"
    message["Message-ID"] = "<att-api@x>"
    message.set_content("See the attachment.")
    message.add_attachment(
        pdf, maintype="application", subtype="pdf", filename="../../invoice <1>.pdf"
    )
    (tmp_path / "1.eml").write_bytes(message.as_bytes())
    mailbox_id = await _local_mailbox(factory, sessionmaker, tmp_path)
    assert (
        await client.post(f"{API}/{mailbox_id}/sync", headers=operator.headers)
    ).status_code == 200

    [ticket] = (await client.get("/api/v1/tickets", headers=viewer.headers)).json()["items"]
    detail = (await client.get(f"/api/v1/tickets/{ticket['id']}", headers=viewer.headers)).json()
    [stored] = detail["messages"]
    [attachment] = stored["attachments"]
    assert (attachment["filename"], attachment["content_type"], attachment["size"]) == (
        "invoice <1>.pdf",
        "application/pdf",
        len(pdf),
    )

    url = f"/api/v1/messages/{stored['id']}/attachments/{attachment['id']}"
    download = await client.get(url, headers=viewer.headers)
    assert download.status_code == 200
    assert download.content == pdf
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert (
        download.headers["content-disposition"]
        == "attachment; filename*=UTF-8''invoice%20%3C1%3E.pdf"
    )
    wrong = await client.get(
        f"/api/v1/messages/{stored['id']}/attachments/999", headers=viewer.headers
    )
    assert wrong.status_code == 404
    assert (await client.get(url)).status_code == 401
