"""The metrics port of background processes (COMMAGENT_METRICS_PORT): `commagent worker` has
no HTTP API, so it serves its own metrics there, with the shared figures read from the
database at scrape time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import ConfigurationError, Settings
from communication_agent.models import Mailbox
from communication_agent.services import health
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.live_server import COMMAGENT, cli_environment, free_port
from tests.mail import raw_email
from tests.metrics import Samples, parse, value

SessionMaker = async_sessionmaker[AsyncSession]


async def test_the_metrics_port_serves_process_and_shared_figures(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory
) -> None:
    mailbox = await factory.mailbox()
    port = free_port()
    with_port = settings.model_copy(update={"metrics_port": port})
    with health.serve_metrics(with_port, sessionmaker):
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "commagent_database_up") == 1
    assert ("commagent_sync_lag_seconds", frozenset({("mailbox", str(mailbox.id))})) in samples
    assert ("commagent_outbox_depth", frozenset({("status", "pending")})) in samples
    assert value(samples, "process_resident_memory_bytes") > 0
    with pytest.raises(httpx.TransportError):  # stopped with the block
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)


async def test_a_busy_metrics_port_stops_the_start_with_its_name(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    port = free_port()
    with_port = settings.model_copy(update={"metrics_port": port})
    with (
        health.serve_metrics(with_port, sessionmaker),
        pytest.raises(ConfigurationError, match="COMMAGENT_METRICS_PORT"),
        health.serve_metrics(with_port, sessionmaker),
    ):
        pass


async def test_no_port_no_server(settings: Settings, sessionmaker: SessionMaker) -> None:
    with health.serve_metrics(settings, sessionmaker):
        pass  # nothing to bind, nothing to fail


async def test_a_worker_process_reports_its_syncs_on_its_metrics_port(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory, tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(raw_email(message_id="<wm1@x>"))
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.config = {"path": str(folder)}
        await session.commit()
    port = free_port()
    env = cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "data"),
        metrics_port=str(port),
        reasoning_enabled="false",
    )
    worker = subprocess.Popen(
        [COMMAGENT, "worker", "--interval", "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key = str(mailbox.id)
    ingested = ("commagent_messages_ingested_total", {"mailbox": key, "direction": "inbound"})
    samples: Samples = {}
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            # The counter moves as the message is stored; the mailbox's state is read from the
            # database at scrape time, so it says "ok" only once the sync has committed.
            while time.monotonic() < deadline and not (
                value(samples, ingested[0], **ingested[1]) >= 1
                and value(samples, "commagent_mailbox_state", mailbox=key, state="ok") == 1
            ):
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    samples = parse(response.text)
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert value(samples, ingested[0], **ingested[1]) == 1, output
    assert value(samples, "commagent_database_up") == 1
    assert value(samples, "commagent_mailbox_state", mailbox=key, state="ok") == 1
    assert worker.returncode == 0, output
    assert "metrics_server_started" in output
