"""`commagent webhooks` and webhook delivery from `commagent worker`, as an operator runs them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.models import Ticket
from communication_agent.models.enums import TicketState
from communication_agent.services import tickets
from communication_agent.services.actors import Actor
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.live_server import COMMAGENT, cli_environment, run_cli
from tests.webhook_receiver import WebhookReceiver, verify

SessionMaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "cli-data"),
        reasoning_enabled="false",
        webhook_interval_seconds="0.1",
        webhook_retry_base_seconds="0.1",
    )


async def _close(sessionmaker: SessionMaker, ticket: Ticket) -> None:
    async with sessionmaker() as session:
        await tickets.change_state(
            session,
            Actor.system("tests"),
            ticket.id,
            target=TicketState.DONE,
            expected_version=ticket.version,
        )


async def test_endpoints_are_managed_and_delivered_to_by_a_worker(
    env: dict[str, str], sessionmaker: SessionMaker, factory: Factory
) -> None:
    with WebhookReceiver() as receiver:
        added = run_cli(
            "webhooks", "add", receiver.url(), "--events", "ticket.state_changed,reply.sent",
            "--description", "ops channel", env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        secret = added.stdout.strip()
        assert secret.startswith("whsec_")
        assert "cannot be shown again" in added.stderr
        receiver.secret = secret

        listed = run_cli("webhooks", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert receiver.url() in listed.stdout
        assert secret[:10] in listed.stdout
        assert secret not in listed.stdout

        await _close(sessionmaker, await factory.ticket())
        worker = subprocess.Popen(
            [COMMAGENT, "worker", "--interval", "3600"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not receiver.accepted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=30)[0]
        assert worker.returncode == 0, output
        [request] = receiver.received
        assert verify(secret, request.headers, request.body)
        assert request.json()["data"]["to"] == "DONE"
        assert secret not in output  # never logged

        deliveries = run_cli("webhooks", "deliveries", "--status", "delivered", env=env)
        assert deliveries.returncode == 0, deliveries.stderr
        assert "ticket.state_changed" in deliveries.stdout
        again = run_cli("webhooks", "redeliver", "1", env=env)
        assert again.returncode == 0, again.stderr
        assert "queued delivery 2" in again.stdout

        disabled = run_cli("webhooks", "disable", "1", env=env)
        assert "webhook endpoint 1 disabled" in disabled.stdout, disabled.stderr
        deleted = run_cli("webhooks", "delete", "1", env=env)
        assert "webhook endpoint 1 deleted" in deleted.stdout, deleted.stderr


def test_bad_input_ends_with_one_readable_line(env: dict[str, str]) -> None:
    bad_url = run_cli("webhooks", "add", "not-a-url", env=env)
    assert bad_url.returncode == 1
    assert "is not an http(s) URL" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr
    bad_event = run_cli("webhooks", "add", "https://x.test/", "--events", "ticket.deleted", env=env)
    assert bad_event.returncode == 1
    assert "choose from: ticket.state_changed, draft.ready, reply.sent" in bad_event.stderr
    missing = run_cli("webhooks", "delete", "42", env=env)
    assert missing.returncode == 1
    assert "Webhook endpoint 42 does not exist." in missing.stderr
