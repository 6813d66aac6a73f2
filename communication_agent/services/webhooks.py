"""Webhook endpoints and their deliveries, as admins manage them (API and CLI alike).

An endpoint's signing secret is generated here and returned once, at creation; it is stored
encrypted with the secret key (it must be read back to sign) and never shown again. The
activity log records every change with the endpoint's host only: a receiver's URL can itself
be a credential (chat tools put tokens in the path), and viewers read the log.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import begin_write
from communication_agent.models import WebhookDelivery, WebhookEndpoint
from communication_agent.models.base import utcnow
from communication_agent.models.webhooks import DeliveryStatus
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.credentials import encrypt_credentials
from communication_agent.services.errors import ConflictError, InvalidInputError, NotFoundError
from communication_agent.services.pagination import Page, newest_first_page
from communication_agent.services.webhook_events import EVENT_TYPES

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_HINT_LENGTH = 10
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 200
DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


@dataclass(frozen=True)
class EndpointSummary:
    endpoint: WebhookEndpoint
    deliveries: dict[str, int] = field(default_factory=dict)  # by status


def check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port out of range raises here
    except ValueError:  # e.g. an unclosed IPv6 bracket, a port out of range
        usable = False
    if not usable:
        raise InvalidInputError(
            f"{url[:100]!r} is not an http(s) URL; give the receiver's full address, "
            "e.g. https://hooks.example.com/commagent."
        )
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidInputError(
            f"The URL must be at most {MAX_URL_LENGTH} characters, without spaces or controls."
        )
    return url


def check_events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise InvalidInputError(
            f"Unknown or missing events {unknown}; choose from: {', '.join(EVENT_TYPES)}.",
            allowed=list(EVENT_TYPES),
        )
    return [e for e in EVENT_TYPES if e in events]


def _check_description(description: str) -> str:
    description = description.strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInputError(
            f"The description must be at most {MAX_DESCRIPTION_LENGTH} characters."
        )
    return description


def host_of(url: str) -> str:
    """The host alone: safe to log and show to viewers (the path may hold a token)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


async def _load(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFoundError(
            f"Webhook endpoint {endpoint_id} does not exist.", endpoint_id=endpoint_id
        )
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    actor: Actor,
    secret_key: str,
    *,
    url: str,
    events: Sequence[str] = EVENT_TYPES,
    description: str = "",
) -> CreatedEndpoint:
    """Add an active endpoint with a new signing secret (returned here only)."""
    url, chosen = check_url(url), check_events(events)
    description = _check_description(description)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    await begin_write(session)
    endpoint = WebhookEndpoint(
        url=url,
        description=description,
        events=chosen,
        secret_encrypted=encrypt_credentials(secret_key, {"secret": secret}),
        secret_hint=secret[:SECRET_HINT_LENGTH],
        is_active=True,
    )
    session.add(endpoint)
    await session.flush()
    activity.record(
        session,
        actor,
        "webhook.created",
        details={"endpoint_id": endpoint.id, "host": host_of(url), "events": chosen},
    )
    await session.commit()
    return CreatedEndpoint(endpoint, secret)


async def list_endpoints(
    session: AsyncSession, endpoint_id: int | None = None
) -> list[EndpointSummary]:
    """Every endpoint (or the one with `endpoint_id`) with its deliveries counted by status."""
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    counting = select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count()).group_by(
        WebhookDelivery.endpoint_id, WebhookDelivery.status
    )
    if endpoint_id is not None:
        await _load(session, endpoint_id)
        query = query.where(WebhookEndpoint.id == endpoint_id)
        counting = counting.where(WebhookDelivery.endpoint_id == endpoint_id)
    endpoints = (await session.scalars(query)).all()
    counts: dict[int, dict[str, int]] = {}
    rows = await session.execute(counting)
    for owner, status, count in rows:
        counts.setdefault(owner, {})[status] = count
    return [
        EndpointSummary(e, {s: counts.get(e.id, {}).get(s, 0) for s in DELIVERY_STATUSES})
        for e in endpoints
    ]


async def update_endpoint(
    session: AsyncSession,
    actor: Actor,
    endpoint_id: int,
    *,
    is_active: bool | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    """Enable or disable (a disabled endpoint gets no new events; its queued ones wait), change
    the events it receives or its description. Unchanged fields are left alone."""
    await begin_write(session)
    endpoint = await _load(session, endpoint_id)
    changes: dict[str, object] = {}
    if is_active is not None and is_active != endpoint.is_active:
        endpoint.is_active = changes["is_active"] = is_active
    if events is not None and (chosen := check_events(events)) != endpoint.events:
        endpoint.events = chosen
        changes["events"] = chosen
    if description is not None and (text := _check_description(description)) != (
        endpoint.description
    ):
        endpoint.description = changes["description"] = text
    if changes:
        endpoint.updated_at = utcnow()
        activity.record(
            session,
            actor,
            "webhook.updated",
            details={"endpoint_id": endpoint.id, "host": host_of(endpoint.url), **changes},
        )
    await session.commit()
    return endpoint


async def delete_endpoint(session: AsyncSession, actor: Actor, endpoint_id: int) -> None:
    """Remove the endpoint and its deliveries (queued ones are never sent)."""
    await begin_write(session)
    endpoint = await _load(session, endpoint_id)
    activity.record(
        session,
        actor,
        "webhook.deleted",
        details={"endpoint_id": endpoint.id, "host": host_of(endpoint.url)},
    )
    await session.delete(endpoint)
    await session.commit()


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: int | None = None,
    status: str | None = None,
    event_type: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[WebhookDelivery]:
    """Newest first; the cursor is the last id seen."""
    query: Select[WebhookDelivery] = select(WebhookDelivery)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    return await newest_first_page(session, query, WebhookDelivery.id, cursor=cursor, limit=limit)


async def get_delivery(session: AsyncSession, delivery_id: int) -> WebhookDelivery:
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFoundError(
            f"Webhook delivery {delivery_id} does not exist.", delivery_id=delivery_id
        )
    return delivery


async def redeliver(session: AsyncSession, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """Queue a delivered or failed event again, as a new delivery with the same event id and
    body (receivers that dedupe on the id will see a repeat; that is the point of the id)."""
    await begin_write(session)
    original = await get_delivery(session, delivery_id)
    if original.status not in ("delivered", "failed"):
        raise ConflictError(
            f"Delivery {delivery_id} is {original.status}: it will be attempted anyway.",
            status=original.status,
        )
    endpoint = await _load(session, original.endpoint_id)
    if not endpoint.is_active:
        raise ConflictError(
            f"Webhook endpoint {endpoint.id} is disabled; enable it first.",
            endpoint_id=endpoint.id,
        )
    now = utcnow()
    again = WebhookDelivery(
        endpoint_id=original.endpoint_id,
        event_id=original.event_id,
        event_type=original.event_type,
        body=original.body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        history=[],
        created_at=now,
        updated_at=now,
    )
    session.add(again)
    await session.flush()
    activity.record(
        session,
        actor,
        "webhook.redelivered",
        details={
            "endpoint_id": endpoint.id,
            "delivery_id": delivery_id,
            "new_delivery_id": again.id,
        },
    )
    await session.commit()
    return again
