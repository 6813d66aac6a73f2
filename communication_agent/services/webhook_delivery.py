"""Delivering queued webhook events: claim, sign, post, record, and retry until a limit.

Deliveries are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer
on SQLite), so any number of processes share the queue and a dead process's delivery is taken
again when its lease ends: delivery is at least once, and receivers dedupe on the event `id`.

Every attempt is recorded on its row (status code or error, duration). A 2xx delivers. Anything
else is retried with exponential backoff and jitter, never sooner than a `Retry-After` asks,
until `max_attempts` or `max_age` is reached; then the delivery is `failed` (an admin can
redeliver it). A 4xx is retried too: a receiver answering 404 or 401 is usually misconfigured
for a while, not wrong for ever, and giving up at once would lose every event of that while.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.webhook_http import PostResult, WebhookPoster
from communication_agent.core.config import Settings
from communication_agent.core.db import begin_write
from communication_agent.core.logging import get_logger
from communication_agent.models import WebhookDelivery, WebhookEndpoint
from communication_agent.models.base import utcnow
from communication_agent.services import work_queue
from communication_agent.services.background import run_rounds
from communication_agent.services.credentials import (
    CredentialsUnreadableError,
    decrypt_credentials,
)

log = get_logger(__name__)
DELIVERY_BATCH = 200  # deliveries a round; a full round is followed at once (run_rounds)
SessionMaker = async_sessionmaker[AsyncSession]
CONCURRENCY = 8  # attempts in flight per process: one slow receiver must not hold up the rest


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout: float = 10.0
    lease: timedelta = timedelta(seconds=60)
    retry_base: float = 10.0
    retry_max: float = 3600.0
    max_attempts: int = 25
    max_age: timedelta = timedelta(hours=24)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            timeout=settings.webhook_timeout_seconds,
            lease=timedelta(seconds=settings.webhook_lease_seconds),
            retry_base=settings.webhook_retry_base_seconds,
            retry_max=settings.webhook_retry_max_seconds,
            max_attempts=settings.webhook_max_attempts,
            max_age=timedelta(seconds=settings.webhook_max_age_seconds),
        )

    def retry_delay(self, attempts: int, retry_after: float | None) -> timedelta:
        """`retry_base` doubled per attempt made, capped at `retry_max`, then 50-100 % of it
        (so retries after an outage spread out); a `Retry-After` is a floor, also capped."""
        ceiling = min(self.retry_base * 2 ** max(attempts - 1, 0), self.retry_max)
        delay = ceiling * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        return timedelta(seconds=delay)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` keyed with the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


@dataclass(frozen=True)
class Claimed:
    id: int
    attempts: int
    owner: str


@dataclass(frozen=True)
class Request:
    """What an attempt sends, read before any network call."""

    url: str
    event_type: str
    body: bytes
    secret: str


async def claim(sessionmaker: SessionMaker, owner: str, lease: timedelta) -> Claimed | None:
    """The oldest due delivery of an active endpoint (a disabled endpoint's wait)."""
    active = select(WebhookEndpoint.id).where(WebhookEndpoint.is_active)

    def due(now: datetime) -> ColumnElement[bool]:
        return WebhookDelivery.endpoint_id.in_(active) & or_(
            (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now),
            (WebhookDelivery.status == "delivering") & (WebhookDelivery.lease_expires_at < now),
        )

    async def claimed(_session: AsyncSession, row: WebhookDelivery) -> Claimed:
        return Claimed(row.id, row.attempts, owner)

    return await work_queue.claim_oldest(
        sessionmaker,
        WebhookDelivery,
        due,
        running="delivering",
        owner=owner,
        lease=lease,
        claimed=claimed,
    )


async def _read(sessionmaker: SessionMaker, delivery_id: int, secret_key: str) -> Request | None:
    """None when the endpoint was deleted since the claim (its deliveries went with it)."""
    async with sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return None
        endpoint = await session.get_one(WebhookEndpoint, delivery.endpoint_id)
        secret = str(decrypt_credentials(secret_key, endpoint.secret_encrypted)["secret"])
        return Request(endpoint.url, delivery.event_type, delivery.body.encode(), secret)


async def attempt(
    sessionmaker: SessionMaker,
    poster: WebhookPoster,
    secret_key: str,
    policy: DeliveryPolicy,
    claimed: Claimed,
) -> str:
    """Post the claimed delivery once and record how it went; returns the new status."""
    try:
        request = await _read(sessionmaker, claimed.id, secret_key)
    except CredentialsUnreadableError as exc:
        result = PostResult(None, 0, f"the endpoint's secret is unreadable: {exc}")
    else:
        if request is None:
            return "lost"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Commagent-Event": request.event_type,
            "X-Commagent-Delivery": str(claimed.id),
            "X-Commagent-Timestamp": str(timestamp),
            "X-Commagent-Signature": signature(request.secret, timestamp, request.body),
        }
        result = await poster.post(request.url, request.body, headers)
    return await record(sessionmaker, policy, claimed, result)


def _describe(result: PostResult) -> str | None:
    if result.status_code is None:
        return result.error or "no response"
    if 200 <= result.status_code < 300:
        return None
    excerpt = " ".join(result.excerpt.split())[:200]
    reason = result.error or (f"answered {excerpt!r}" if excerpt else "no body")
    return f"HTTP {result.status_code}: {reason}"


async def record(
    sessionmaker: SessionMaker, policy: DeliveryPolicy, claimed: Claimed, result: PostResult
) -> str:
    """Write the attempt on the row, while the lease is still ours (a successor's stands)."""
    now = utcnow()
    error = _describe(result)
    async with sessionmaker() as session:
        await begin_write(session)
        row = await session.get(
            WebhookDelivery, claimed.id, with_for_update=True, populate_existing=True
        )
        if row is None or row.lease_owner != claimed.owner:
            await session.commit()
            return "lost"
        row.history = [
            *row.history,
            {
                "attempt": claimed.attempts,
                "at": now.isoformat(),
                "status_code": result.status_code,
                "duration_ms": result.duration_ms,
                "error": error,
                "by": claimed.owner,
            },
        ]
        row.last_status_code, row.last_duration_ms = result.status_code, result.duration_ms
        row.last_error, row.lease_owner, row.lease_expires_at = error, None, None
        row.updated_at = now
        if error is None:
            row.status, row.delivered_at = "delivered", now
        else:
            next_at = now + policy.retry_delay(claimed.attempts, result.retry_after)
            if claimed.attempts >= policy.max_attempts or next_at > row.created_at + policy.max_age:
                row.status = "failed"
                row.last_error = f"gave up after attempt {claimed.attempts}: {error}"
            else:
                row.status, row.next_attempt_at = "pending", next_at
        status = row.status
        await session.commit()
    if status != "delivered":
        log.warning("webhook_attempt_failed", delivery_id=claimed.id, status=status, error=error)
    return status


async def run_due(
    sessionmaker: SessionMaker,
    poster: WebhookPoster,
    secret_key: str,
    policy: DeliveryPolicy,
    *,
    owner: str,
    limit: int = DELIVERY_BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    """Deliver what is due, up to CONCURRENCY at a time; returns how many attempts were made."""

    async def one(claimed: Claimed) -> None:
        try:
            await attempt(sessionmaker, poster, secret_key, policy, claimed)
        except Exception as exc:  # recorded on the delivery; the loop goes on
            log.exception("webhook_attempt_crashed", delivery_id=claimed.id)
            failure = PostResult(None, 0, f"unexpected error ({type(exc).__name__})")
            await record(sessionmaker, policy, claimed, failure)

    processed = 0
    while processed < limit and not (stop and stop.is_set()):
        batch: list[Claimed] = []
        while len(batch) < CONCURRENCY:
            claimed = await claim(sessionmaker, owner, policy.lease)
            if claimed is None:
                break
            batch.append(claimed)
        if not batch:
            break
        await asyncio.gather(*(one(c) for c in batch))
        processed += len(batch)
    return processed


async def run_loop(
    sessionmaker: SessionMaker,
    poster: WebhookPoster,
    secret_key: str,
    policy: DeliveryPolicy,
    *,
    owner: str,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Rounds of `run_due` until `stop` is set (see `background.run_rounds`); closes `poster`."""

    async def one_round() -> int:
        return await run_due(sessionmaker, poster, secret_key, policy, owner=owner, stop=stop)

    try:
        await run_rounds(
            "webhook",
            one_round,
            owner=owner,
            interval=interval,
            stop=stop,
            full_round=DELIVERY_BATCH,
        )
    finally:
        await poster.aclose()
