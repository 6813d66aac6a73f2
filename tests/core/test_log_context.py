"""The logs of a whole ticket's life (sync, state change, triage and draft, approval, send) at
INFO, as production writes them: JSON lines, request ids on request lines, the ticket id on the
lines about the ticket, and neither secrets nor mail text anywhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.core.logging import REDACTED, configure_logging, get_logger
from communication_agent.models import Mailbox
from communication_agent.models.enums import Role, TicketState
from communication_agent.services import reasoning_tasks, sending
from tests.conftest import TEST_SECRET_KEY, running_app
from tests.factories import PASSWORD, Factory
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
CUSTOMER_SENTENCE = "The blue heron crossed Lake Quintessence twice before my parcel vanished."
REPLY_SENTENCE = "Your parcel left the Zebrafield depot this morning."
SCRAPER_TOKEN = "scraper-token-for-the-log-test"


async def _local_mailbox(sessionmaker: SessionMaker, factory: Factory, folder: Path) -> int:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        await session.commit()
    return mailbox.id


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`configure_logging` points the root handler at pytest's capture, which closes after the
    test: put the previous configuration back so later tests do not log into a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    root.handlers, root.level = handlers, level
    structlog.configure(**config)


def _lines(output: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines, "logging was not captured"
    return lines


@pytest.mark.usefixtures("restored_logging")
async def test_a_tickets_life_is_logged_with_ids_and_without_secrets_or_mail_text(
    settings: Settings,
    factory: Factory,
    sessionmaker: SessionMaker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    quiet = settings.model_copy(
        update={
            "reasoning_interval_seconds": 3600.0,  # the test runs the queue itself
            "sender_interval_seconds": 3600.0,
            "metrics_token": SecretStr(SCRAPER_TOKEN),
        }
    )
    operator = await factory.principal(Role.OPERATOR)
    (tmp_path / "1.eml").write_bytes(
        raw_email(subject="Lost parcel", body=f"Hello,\n\n{CUSTOMER_SENTENCE}\nWhere is it?")
    )
    mailbox_id = await _local_mailbox(sessionmaker, factory, tmp_path)
    h = operator.headers
    async with running_app(quiet) as (app, client):
        assert (await client.post(f"/api/v1/mailboxes/{mailbox_id}/sync", headers=h)).is_success
        [ticket] = (await client.get("/api/v1/tickets", headers=h)).json()["items"]
        moved = await client.post(
            f"/api/v1/tickets/{ticket['id']}/state",
            json={"state": "NEEDS_ACTION", "version": ticket["version"], "reason": "on it"},
            headers=h,
        )
        assert moved.status_code == 200, moved.text
        state = app.state
        assert await reasoning_tasks.run_due(
            state.sessionmaker, state.reasoning_model, state.assistant_config,
            owner="tests", lease=timedelta(minutes=5),
        ) == 1  # fmt: skip
        draft = (await client.get(f"/api/v1/tickets/{ticket['id']}", headers=h)).json()[
            "latest_draft"
        ]
        edited = await client.patch(
            f"/api/v1/drafts/{draft['id']}",
            json={"body": f"Hello,\n\n{REPLY_SENTENCE}", "version": draft["version"]},
            headers=h,
        )
        approved = await client.post(
            f"/api/v1/drafts/{draft['id']}/approve",
            json={"version": edited.json()["version"]},
            headers=h,
        )
        assert approved.status_code == 200, approved.text
        assert await sending.run_due(
            state.sessionmaker, state.provider_opener, owner="tests",
            lease=timedelta(minutes=2), state_after_send=TicketState.WAITING_OTHERS,
        ) == 1  # fmt: skip
        assert (
            await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"})
        ).is_success
        get_logger("tests").error("diagnostic", detail=f"token was {SCRAPER_TOKEN}")  # masked
        get_logger("tests").info("after_the_requests")
    captured = capsys.readouterr()
    output = captured.out + captured.err
    lines = _lines(output)

    for secret in (TEST_SECRET_KEY, operator.token, PASSWORD, SCRAPER_TOKEN):
        assert secret not in output
    [diagnostic] = [line for line in lines if line["event"] == "diagnostic"]
    assert diagnostic["detail"] == f"token was {REDACTED}"
    for text in (CUSTOMER_SENTENCE, "Lake Quintessence", REPLY_SENTENCE, "Zebrafield"):
        assert text not in output, text

    requests = [line for line in lines if line["event"] == "http_request"]
    assert requests
    assert all(len(line.get("request_id", "")) == 32 for line in requests)
    assert len({line["request_id"] for line in requests}) == len(requests)
    [state_change] = [r for r in requests if r["route"] == "/api/v1/tickets/{ticket_id}/state"]
    assert state_change["ticket_id"] == ticket["id"]
    assert (state_change["method"], state_change["status"]) == ("POST", 200)
    [sync_request] = [r for r in requests if r["route"] == "/api/v1/mailboxes/{mailbox_id}/sync"]
    assert sync_request["mailbox_id"] == mailbox_id
    for approval in (r for r in requests if r["route"].startswith("/api/v1/drafts/")):
        assert approval["draft_id"] == draft["id"]

    about_the_ticket = [
        line for line in lines if line["event"] in {"reasoning_done", "send_processed"}
    ]
    assert [line["event"] for line in about_the_ticket] == ["reasoning_done", "send_processed"]
    assert all(line["ticket_id"] == ticket["id"] for line in about_the_ticket)
    assert about_the_ticket[-1]["outcome"] == "sent"

    # Nothing of one request or ticket sticks to what comes after.
    [after] = [line for line in lines if line["event"] == "after_the_requests"]
    assert not {"request_id", "ticket_id", "draft_id", "mailbox_id"} & set(after)
    assert all(line["level"] != "debug" for line in lines)  # /metrics polled: debug only
