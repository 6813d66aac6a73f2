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
