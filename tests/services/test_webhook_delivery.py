"""Delivering webhooks over real HTTP to a loopback receiver: signed, retried with backoff and
Retry-After, given up at the limits, every attempt recorded, each event delivered once by any
number of concurrent delivery loops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.webhook_http import HttpWebhookPoster, PostResult, webhook_poster
from communication_agent.core.config import Settings
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.models import Ticket, WebhookDelivery
from communication_agent.models.enums import TicketState
from communication_agent.services import tickets, webhook_delivery, webhooks
from communication_agent.services.webhook_delivery import DeliveryPolicy
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory
from tests.live_server import free_port
from tests.services.test_webhook_events import ADMIN, add_endpoint
from tests.webhook_receiver import Fault, WebhookReceiver, verify

SessionMaker = async_sessionmaker[AsyncSession]
FAST = DeliveryPolicy(
    timeout=2.0,
    lease=timedelta(seconds=10),
    retry_base=0.05,
    retry_max=2.0,
    max_attempts=6,
    max_age=timedelta(hours=1),
)
FINAL = ("delivered", "failed")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
async def poster() -> AsyncIterator[HttpWebhookPoster]:
    poster = HttpWebhookPoster(timeout=FAST.timeout, user_agent="commagent-tests")
    yield poster
    await poster.aclose()


async def move(sessionmaker: SessionMaker, ticket: Ticket, target: TicketState) -> None:
    async with sessionmaker() as session:
        current = await session.get_one(Ticket, ticket.id)
        await tickets.change_state(
            session, ADMIN, ticket.id, target=target, expected_version=current.version
        )


async def rows(sessionmaker: SessionMaker) -> list[WebhookDelivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def deliver_all(
    sessionmaker: SessionMaker,
    poster: HttpWebhookPoster,
    policy: DeliveryPolicy = FAST,
    *,
    seconds: float = 20,
) -> list[WebhookDelivery]:
    """Run delivery rounds until every delivery is delivered or failed."""
    deadline = time.monotonic() + seconds
    while True:
        await webhook_delivery.run_due(sessionmaker, poster, TEST_SECRET_KEY, policy, owner="tests")
        found = await rows(sessionmaker)
        if all(d.status in FINAL for d in found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not delivered in {seconds} s: {[(d.id, d.status) for d in found]}")
        await asyncio.sleep(0.01)


async def one_event(
    sessionmaker: SessionMaker, factory: Factory, receiver: WebhookReceiver
) -> webhooks.CreatedEndpoint:
    created = await add_endpoint(sessionmaker, url=receiver.url())
    receiver.secret = created.secret
    await move(sessionmaker, await factory.ticket(), TicketState.NEEDS_ACTION)
    return created


async def test_a_delivery_is_signed_with_the_secret_shown_at_creation(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    created = await one_event(sessionmaker, factory, receiver)
    [delivery] = await deliver_all(sessionmaker, poster)

    [request] = receiver.received  # the receiver answers 401 to a bad signature
    assert request.answered == 204
    assert request.body == delivery.body.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-commagent-event"] == "ticket.state_changed"
    assert request.headers["x-commagent-delivery"] == str(delivery.id)
    assert abs(int(request.headers["x-commagent-timestamp"]) - time.time()) < 30
    assert request.headers["user-agent"] == "commagent-tests"
    assert verify(created.secret, request.headers, request.body)
    assert not verify(created.secret + "x", request.headers, request.body)
    assert not verify(created.secret, request.headers, request.body + b" ")
    assert not verify(created.secret, request.headers, request.body, now=time.time() + 3600)
    assert request.json()["id"] == delivery.event_id

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)
    assert delivery.delivered_at is not None
    assert delivery.last_error is None
    [attempt] = delivery.history
    assert (attempt["attempt"], attempt["status_code"], attempt["error"]) == (1, 204, None)
    assert attempt["by"] == "tests"
    assert attempt["duration_ms"] >= 0


async def test_server_errors_are_retried_with_growing_delays_until_delivered(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    receiver.inject(Fault(status=500, times=3))
    [delivery] = await deliver_all(sessionmaker, poster)

    assert [r.answered for r in receiver.received] == [500, 500, 500, 204]
    assert len({r.body for r in receiver.received}) == 1  # the same event every time
    assert {r.headers["x-commagent-delivery"] for r in receiver.received} == {str(delivery.id)}
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    for n, gap in enumerate(gaps):  # base * 2^n, jittered down to half at most
        assert gap >= FAST.retry_base * 2**n * 0.5, gaps
    assert (delivery.status, delivery.attempts) == ("delivered", 4)
    assert [a["status_code"] for a in delivery.history] == [500, 500, 500, 204]
    assert delivery.history[0]["error"].startswith("HTTP 500: answered")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
    status: int,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    receiver.inject(Fault(status=status, retry_after="1"))
    [delivery] = await deliver_all(sessionmaker, poster)

    first, second = receiver.received
    assert (first.answered, second.answered) == (status, 204)
    assert second.at - first.at >= 1.0  # backoff alone would have been 25-50 ms
    assert delivery.attempts == 2


async def test_a_receiver_that_keeps_refusing_is_given_up_after_max_attempts(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    receiver.inject(Fault(status=404, times=100))
    policy = DeliveryPolicy(
        timeout=2.0, lease=FAST.lease, retry_base=0.02, max_attempts=3, max_age=FAST.max_age
    )
    [delivery] = await deliver_all(sessionmaker, poster, policy)

    assert len(receiver.received) == 3  # a 404 is retried (a receiver misconfigured for a while)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 404)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("gave up after attempt 3: HTTP 404")
    assert len(delivery.history) == 3


async def test_a_delivery_older_than_max_age_is_given_up(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    receiver.inject(Fault(status=500, times=100))
    policy = DeliveryPolicy(timeout=2.0, retry_base=0.05, max_age=timedelta(milliseconds=1))
    [delivery] = await deliver_all(sessionmaker, poster, policy)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert len(receiver.received) == 1


async def test_a_receiver_slower_than_the_timeout_is_cut_off_and_retried(
    sessionmaker: SessionMaker, factory: Factory, receiver: WebhookReceiver
) -> None:
    await one_event(sessionmaker, factory, receiver)
    receiver.inject(Fault(delay=3.0))
    poster = HttpWebhookPoster(timeout=0.5, user_agent="tests")
    policy = DeliveryPolicy(timeout=0.5, lease=FAST.lease, retry_base=0.05)
    started = time.monotonic()
    try:
        [delivery] = await deliver_all(sessionmaker, poster, policy)
    finally:
        await poster.aclose()
    assert time.monotonic() - started < 3.0  # the hung request did not hold the loop
    assert delivery.status == "delivered"
    hung, ok = delivery.history
    assert (hung["status_code"], hung["error"]) == (None, "no answer within 0.5 s")
    assert 400 <= hung["duration_ms"] < 2000
    assert ok["status_code"] == 204


async def test_an_unreachable_receiver_is_recorded_and_retried_later(
    sessionmaker: SessionMaker, factory: Factory, poster: HttpWebhookPoster
) -> None:
    await add_endpoint(sessionmaker, url=f"http://127.0.0.1:{free_port()}/nobody-listens")
    await move(sessionmaker, await factory.ticket(), TicketState.DONE)
    attempts = await webhook_delivery.run_due(
        sessionmaker, poster, TEST_SECRET_KEY, FAST, owner="tests"
    )
    [delivery] = await rows(sessionmaker)
    assert attempts == 1
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("ConnectError")
    assert delivery.lease_owner is None


async def test_redirects_are_not_followed(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    elsewhere = WebhookReceiver()
    with elsewhere:
        receiver.inject(Fault(status=307, location=elsewhere.url("/stolen")))
        [delivery] = await deliver_all(sessionmaker, poster)
        assert elsewhere.received == []
    assert [r.answered for r in receiver.received] == [307, 204]
    assert delivery.history[0]["error"] == (
        "HTTP 307: redirected to 127.0.0.1; redirects are not followed: update the endpoint's URL"
    )


async def test_a_disabled_endpoints_deliveries_wait_until_it_is_enabled(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    created = await one_event(sessionmaker, factory, receiver)
    async with sessionmaker() as session:
        await webhooks.update_endpoint(session, ADMIN, created.endpoint.id, is_active=False)
    assert (
        await webhook_delivery.run_due(sessionmaker, poster, TEST_SECRET_KEY, FAST, owner="t") == 0
    )
    await move(sessionmaker, await factory.ticket(), TicketState.DONE)  # not queued while off
    assert len(await rows(sessionmaker)) == 1
    async with sessionmaker() as session:
        await webhooks.update_endpoint(session, ADMIN, created.endpoint.id, is_active=True)
    [delivery] = await deliver_all(sessionmaker, poster)
    assert delivery.status == "delivered"
    assert len(receiver.accepted) == 1


async def test_a_dead_processs_delivery_is_taken_again_after_its_lease(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    await one_event(sessionmaker, factory, receiver)
    dead = await webhook_delivery.claim(sessionmaker, "dead", timedelta(milliseconds=200))
    assert dead is not None
    assert await webhook_delivery.claim(sessionmaker, "alive", FAST.lease) is None  # held
    await asyncio.sleep(0.3)
    [delivery] = await deliver_all(sessionmaker, poster)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    # The dead process wakes up with a result: the successor's outcome stands.
    late = PostResult(500, 10)
    assert await webhook_delivery.record(sessionmaker, FAST, dead, late) == "lost"
    [again] = await rows(sessionmaker)
    assert (again.status, len(again.history)) == ("delivered", 1)


async def test_an_unreadable_secret_is_recorded_not_fatal(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    """A process started with another COMMAGENT_SECRET_KEY cannot sign: it says so."""
    await one_event(sessionmaker, factory, receiver)
    other_key = "another-secret-key-0123456789-abcdefghijklmnop"
    await webhook_delivery.run_due(sessionmaker, poster, other_key, FAST, owner="tests")
    [delivery] = await rows(sessionmaker)
    assert delivery.status == "pending"
    assert delivery.last_error is not None
    assert "secret is unreadable" in delivery.last_error
    assert receiver.received == []


async def test_two_delivery_loops_deliver_each_event_exactly_once(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory, receiver: WebhookReceiver
) -> None:
    """Two loops with their own engines (as two processes would have) share the queue; a few
    500s make some deliveries go round again meanwhile."""
    await add_endpoint(sessionmaker, url=receiver.url())
    events = 60
    for _ in range(events // 2):
        ticket = await factory.ticket()
        await move(sessionmaker, ticket, TicketState.NEEDS_ACTION)
        await move(sessionmaker, ticket, TicketState.DONE)
    receiver.inject(Fault(status=500, times=5, delay=0.01))
    receiver.inject(Fault(delay=0.01, times=events))  # slow enough for claims to interleave
    stop = asyncio.Event()
    engines = [create_engine(settings.database, pool_size=4) for _ in range(2)]
    loops = [
        asyncio.create_task(
            webhook_delivery.run_loop(
                create_sessionmaker(engine),
                webhook_poster(settings),
                TEST_SECRET_KEY,
                FAST,
                owner=f"loop-{n}",
                interval=0.05,
                stop=stop,
            )
        )
        for n, engine in enumerate(engines)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(receiver.accepted) < events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few more rounds: nothing more may arrive
    finally:
        stop.set()
        await asyncio.gather(*loops)
        for engine in engines:
            await engine.dispose()
    delivered = Counter(r.json()["id"] for r in receiver.accepted)
    assert len(delivered) == events
    assert set(delivered.values()) == {1}, [k for k, v in delivered.items() if v > 1]
    found = await rows(sessionmaker)
    assert {d.status for d in found} == {"delivered"}
    by = Counter(a["by"] for d in found for a in d.history)
    assert set(by) == {"loop-0", "loop-1"}, by  # both took part


def test_settings_shape_the_policy_and_refuse_a_lease_shorter_than_an_attempt(
    settings: Settings,
) -> None:
    tuned = settings.model_copy(
        update={"webhook_retry_base_seconds": 0.5, "webhook_max_age_seconds": 60}
    )
    policy = DeliveryPolicy.from_settings(tuned)
    assert (policy.retry_base, policy.max_age, policy.timeout) == (0.5, timedelta(minutes=1), 10)
    delays = [policy.retry_delay(n, None).total_seconds() for n in range(1, 6)]
    for n, delay in enumerate(delays):
        assert 0.5 * 2**n * 0.5 <= delay <= 0.5 * 2**n
    assert policy.retry_delay(30, None).total_seconds() <= policy.retry_max
    assert policy.retry_delay(1, 120).total_seconds() == 120
    with pytest.raises(ValueError, match="WEBHOOK_LEASE_SECONDS must be longer"):
        Settings(_env_file=None, webhook_lease_seconds=10, webhook_timeout_seconds=10)


async def test_an_endpoint_deleted_after_the_claim_is_not_posted_to(
    sessionmaker: SessionMaker,
    factory: Factory,
    receiver: WebhookReceiver,
    poster: HttpWebhookPoster,
) -> None:
    created = await one_event(sessionmaker, factory, receiver)
    claimed = await webhook_delivery.claim(sessionmaker, "tests", FAST.lease)
    assert claimed is not None
    async with sessionmaker() as session:
        await webhooks.delete_endpoint(session, ADMIN, created.endpoint.id)
    outcome = await webhook_delivery.attempt(sessionmaker, poster, TEST_SECRET_KEY, FAST, claimed)
    assert outcome == "lost"
    assert receiver.received == []
    assert await rows(sessionmaker) == []
