"""`commagent webhooks`: endpoints (add, list, enable, disable, delete) and their deliveries."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.cli.runtime import console, load_settings, run_service
from communication_agent.core.config import load_secret_key
from communication_agent.models import WebhookDelivery, WebhookEndpoint
from communication_agent.models.webhooks import DeliveryStatus
from communication_agent.services import webhooks
from communication_agent.services.actors import Actor
from communication_agent.services.pagination import Page
from communication_agent.services.webhook_events import EVENT_TYPES

app = typer.Typer(help="Webhooks: signed event notifications to other systems.")
stdout = console()
stderr = console(stderr=True)
CLI_ACTOR = Actor.system("cli")


def _events(values: list[str] | None) -> list[str]:
    chosen = [e.strip() for v in values or [] for e in v.split(",") if e.strip()]
    return chosen or list(EVENT_TYPES)


@app.command("add")
def add(
    url: str,
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            "--event",
            help=f"Comma-separated or repeated; default all: {', '.join(EVENT_TYPES)}.",
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What the endpoint is for.")] = "",
) -> None:
    """Add an endpoint and print its signing secret. It is shown this once only."""
    settings = load_settings()
    secret_key = load_secret_key(settings).get_secret_value()

    async def create(session: AsyncSession) -> webhooks.CreatedEndpoint:
        return await webhooks.create_endpoint(
            session,
            CLI_ACTOR,
            secret_key,
            url=url,
            events=_events(events),
            description=description,
        )

    created = run_service(settings, create)
    endpoint = created.endpoint
    stderr.print(
        f"webhook endpoint {endpoint.id} for {', '.join(endpoint.events)}: store its signing "
        "secret with the receiver now, it cannot be shown again.",
        highlight=False,
    )
    print(created.secret)


@app.command("list")
def list_endpoints() -> None:
    """Endpoints with their deliveries counted by status."""
    rows = run_service(load_settings(), webhooks.list_endpoints)
    table = Table("id", "url", "events", "active", "secret", "pending", "failed", "delivered")
    for summary in rows:
        e, counts = summary.endpoint, summary.deliveries
        table.add_row(
            str(e.id),
            Text(e.url),
            ", ".join(e.events),
            "yes" if e.is_active else "no",
            e.secret_hint + "…",
            str(counts["pending"] + counts["delivering"]),
            str(counts["failed"]),
            str(counts["delivered"]),
        )
    stdout.print(table)


def _set_active(endpoint_id: int, active: bool) -> WebhookEndpoint:
    async def update(session: AsyncSession) -> WebhookEndpoint:
        return await webhooks.update_endpoint(session, CLI_ACTOR, endpoint_id, is_active=active)

    return run_service(load_settings(), update)


@app.command("enable")
def enable(endpoint_id: int) -> None:
    """Send events to the endpoint again (events queued while it was off go out too)."""
    _set_active(endpoint_id, True)
    stdout.print(f"webhook endpoint {endpoint_id} enabled")


@app.command("disable")
def disable(endpoint_id: int) -> None:
    """Stop sending: no new events are queued for it; queued ones wait until it is enabled."""
    _set_active(endpoint_id, False)
    stdout.print(f"webhook endpoint {endpoint_id} disabled")


@app.command("delete")
def delete(endpoint_id: int) -> None:
    """Delete the endpoint and its deliveries."""

    async def remove(session: AsyncSession) -> None:
        await webhooks.delete_endpoint(session, CLI_ACTOR, endpoint_id)

    run_service(load_settings(), remove)
    stdout.print(f"webhook endpoint {endpoint_id} deleted")


@app.command("deliveries")
def deliveries(
    endpoint: Annotated[int | None, typer.Option(help="Only this endpoint's.")] = None,
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """Recent deliveries, newest first, with their last attempt."""

    async def recent(session: AsyncSession) -> Page[WebhookDelivery]:
        return await webhooks.list_deliveries(
            session,
            endpoint_id=endpoint,
            status=status.value if status else None,
            limit=limit,
        )

    table = Table("id", "endpoint", "event", "status", "attempts", "last", "created", "last error")
    for d in run_service(load_settings(), recent).items:
        table.add_row(
            str(d.id),
            str(d.endpoint_id),
            d.event_type,
            d.status,
            str(d.attempts),
            str(d.last_status_code or ""),
            d.created_at.isoformat(timespec="seconds"),
            Text(d.last_error or ""),
        )
    stdout.print(table)


@app.command("redeliver")
def redeliver(delivery_id: int) -> None:
    """Queue a delivered or failed event again (same event id, so receivers can dedupe)."""

    async def again(session: AsyncSession) -> WebhookDelivery:
        return await webhooks.redeliver(session, CLI_ACTOR, delivery_id)

    delivery = run_service(load_settings(), again)
    stdout.print(f"queued delivery {delivery.id} (event {delivery.event_id})")
