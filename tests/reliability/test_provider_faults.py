"""Provider faults: sustained rate limits, 5xx bursts, answers slower than the timeout, a grant
revoked in the middle of a sync. Each time the mailbox degrades (the failure is recorded on it),
says so (`GET /api/v1/mailboxes`, `/readyz`), leaves Gmail alone while it backs off, and comes
back by itself once the fault stops (a revoked grant: once an admin reconnects), with every
message stored exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import google_oauth_client
from communication_agent.adapters.gmail import GmailProvider
from communication_agent.adapters.google_oauth import AccessTokens
from communication_agent.adapters.mail_provider import MailProvider, ProviderOpener
from communication_agent.core.config import Settings
from communication_agent.models import Mailbox
from communication_agent.services.credentials import decrypt_credentials
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.gmail_server import Fault
from tests.reliability.mailbox_under_faults import (
    QUICK,
    SUSTAINED,
    MailboxUnderFaults,
    mailbox_under_faults,
)

SessionMaker = async_sessionmaker[AsyncSession]
ALL_READS = ("profile", "messages.list", "history.list", "batch")


@pytest.fixture
async def mailbox(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory
) -> AsyncIterator[MailboxUnderFaults]:
    async with mailbox_under_faults(settings, sessionmaker, factory) as under_faults:
        yield under_faults


async def _assert_healthy(mailbox: MailboxUnderFaults) -> None:
    view = await mailbox.mailbox_view()
    assert (view["consecutive_errors"], view["last_error"], view["token_state"]) == (0, None, "ok")
    assert view["last_sync_succeeded_at"] is not None
    status, item = await mailbox.readiness()
    assert (status, item["state"]) == ("ready", "ok")
    assert await mailbox.lost_or_duplicated() == []


async def test_sustained_rate_limits_degrade_the_mailbox_until_they_stop(
    mailbox: MailboxUnderFaults,
) -> None:
    mailbox.plant(4, "rate")
    for route in ALL_READS:
        mailbox.gmail.inject(Fault(route, status=429, retry_after="1", times=SUSTAINED))

    for failures in (1, 2, 3):
        assert await mailbox.next_round() == 0
        view = await mailbox.mailbox_view()
        assert view["consecutive_errors"] == failures
    asked = len(mailbox.gmail.state.requests)
    assert await mailbox.round_now() == 0  # backing off: the next round leaves Gmail alone
    assert len(mailbox.gmail.state.requests) == asked
    assert "429" in view["last_error"]
    assert view["token_state"] == "ok"  # throttled, not revoked: no one needs to act
    status, item = await mailbox.readiness()
    assert (status, item["state"], item["consecutive_errors"]) == ("degraded", "failing", 3)
    assert await mailbox.stored() == 0

    mailbox.gmail.state.faults.clear()
    assert await mailbox.next_round() == 1
    await _assert_healthy(mailbox)
    assert await mailbox.stored() == 8


async def test_5xx_bursts_are_ridden_out_or_retried_in_later_rounds(
    mailbox: MailboxUnderFaults,
) -> None:
    mailbox.plant(4, "short")
    for fault in (
        Fault("profile", status=500),
        Fault("messages.list", status=503),
        Fault("batch", status=503),
        Fault("messages.get", status=500, times=2),
    ):
        mailbox.gmail.inject(fault)
    assert await mailbox.next_round() == 1  # within one run's retries: nobody notices
    await _assert_healthy(mailbox)

    mailbox.plant(3, "long")
    mailbox.gmail.inject(Fault("history.list", status=503, times=2 * QUICK.attempts))
    assert await mailbox.next_round() == 0
    assert await mailbox.next_round() == 0
    view = await mailbox.mailbox_view()
    assert view["consecutive_errors"] == 2
    assert "503" in view["last_error"]
    assert (await mailbox.readiness())[1]["state"] == "failing"
    assert await mailbox.next_round() == 1  # the burst is over: back by itself
    await _assert_healthy(mailbox)

    # One message Gmail keeps failing: the rest go in, it waits in the sync errors.
    stubborn = mailbox.gmail.add_message(b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n")
    mailbox.plant(2, "beside")
    mailbox.gmail.inject(Fault("messages.get", status=500, times=SUSTAINED, message_id=stubborn.id))
    assert await mailbox.next_round() == 1
    view = await mailbox.mailbox_view()
    assert (view["open_sync_errors"], view["consecutive_errors"]) == (1, 0)
    assert await mailbox.lost_or_duplicated() == [
        f"lost: Gmail message {stubborn.id} (['INBOX']) is not stored"
    ]
    mailbox.gmail.state.faults.clear()
    assert await mailbox.next_round() == 1
    assert (await mailbox.mailbox_view())["open_sync_errors"] == 0
    await _assert_healthy(mailbox)
    assert await mailbox.stored() == 2 * (4 + 3 + 2) + 1


def _opener_with_timeout(settings: Settings, seconds: float) -> ProviderOpener:
    """The factory's Gmail provider, but with a short client timeout: the factory fixes 30 s,
    which no test should wait for. The same adapter, tokens and policy otherwise."""
    oauth = google_oauth_client(settings)

    async def open_provider(mailbox: Mailbox) -> MailProvider:
        assert mailbox.credentials is not None
        grant = decrypt_credentials(TEST_SECRET_KEY, mailbox.credentials)["refresh_token"]
        return GmailProvider(
            api_url=settings.gmail_api_url,
            tokens=AccessTokens(oauth, str(grant)),
            query=settings.gmail_query,
            window_days=settings.gmail_sync_window_days,
            page_size=settings.gmail_page_size,
            retry=QUICK,
            timeout=seconds,
        )

    return open_provider


async def test_answers_slower_than_the_timeout_fail_rounds_and_slow_downloads_wait(
    mailbox: MailboxUnderFaults,
) -> None:
    impatient = _opener_with_timeout(mailbox.settings, 0.3)
    mailbox.plant(3, "slow")
    mailbox.gmail.inject(Fault("messages.list", delay=1.0, times=SUSTAINED))
    assert await mailbox.next_round(impatient) == 0
    assert await mailbox.next_round(impatient) == 0
    view = await mailbox.mailbox_view()
    assert view["consecutive_errors"] == 2
    assert "timed out" in view["last_error"]
    status, item = await mailbox.readiness()
    assert (status, item["state"]) == ("degraded", "failing")

    mailbox.gmail.state.faults.clear()
    mailbox.gmail.inject(Fault("messages.list", delay=0.1, times=SUSTAINED))  # slow, in time
    assert await mailbox.next_round(impatient) == 1
    await _assert_healthy(mailbox)

    # Downloads that time out: the listing moves on, each message waits in the sync errors.
    mailbox.plant(2, "late")
    mailbox.gmail.inject(Fault("batch", delay=1.0, times=SUSTAINED))
    assert await mailbox.next_round(impatient) == 1
    assert (await mailbox.mailbox_view())["open_sync_errors"] == 4
    mailbox.gmail.state.faults.clear()
    assert await mailbox.next_round(impatient) == 1
    assert (await mailbox.mailbox_view())["open_sync_errors"] == 0
    await _assert_healthy(mailbox)
    assert await mailbox.stored() == 2 * (3 + 2)


async def test_a_grant_revoked_mid_sync_stops_the_mailbox_until_an_admin_reconnects(
    mailbox: MailboxUnderFaults,
) -> None:
    mailbox.plant(6, "revoked")  # twelve messages: three pages
    batches = 0

    def revoke_at_the_second_page(route: str) -> None:
        nonlocal batches
        batches += route == "batch"
        if route == "batch" and batches == 2:
            mailbox.gmail.revoke_all_tokens()  # the user removed our access in their account

    mailbox.gmail.on_request = revoke_at_the_second_page
    assert await mailbox.next_round() == 0
    mailbox.gmail.on_request = None

    view = await mailbox.mailbox_view()
    assert view["token_state"] == "needs_reauth"
    assert "invalid_grant" in view["token_error"]
    assert view["consecutive_errors"] == 1
    status, item = await mailbox.readiness()
    assert (status, item["state"]) == ("degraded", "needs_reauth")
    asked = len(mailbox.gmail.state.requests)
    for _ in range(3):  # rounds go on without it: nothing asks Google in vain
        assert await mailbox.round_now() == 0
    assert len(mailbox.gmail.state.requests) == asked
    assert await mailbox.stored() == 4  # the page stored before the revocation stays

    await mailbox.reconnect()
    assert await mailbox.next_round() == 1
    await _assert_healthy(mailbox)
    assert await mailbox.stored() == 12


async def test_an_outage_of_the_token_endpoint_is_no_revocation(
    mailbox: MailboxUnderFaults,
) -> None:
    mailbox.plant(2, "tokens")
    mailbox.gmail.inject(Fault("token", status=503, times=SUSTAINED))
    assert await mailbox.next_round() == 0
    view = await mailbox.mailbox_view()
    assert (view["token_state"], view["consecutive_errors"]) == ("ok", 1)
    assert "token endpoint" in view["last_error"]
    assert (await mailbox.readiness())[1]["state"] == "failing"

    mailbox.gmail.state.faults.clear()
    assert await mailbox.next_round() == 1
    await _assert_healthy(mailbox)
    assert await mailbox.stored() == 4
