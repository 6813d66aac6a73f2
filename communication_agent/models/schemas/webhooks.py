"""The webhook admin API's contract."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from communication_agent.models.schemas.common import RequestSchema, Schema
from communication_agent.models.webhooks import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)

ALL_EVENTS = list(WebhookEventType)


class WebhookEndpointCreate(RequestSchema):
    url: str = Field(
        max_length=2000, description="The receiver's http(s) URL; redirects are not followed."
    )
    events: list[WebhookEventType] = Field(
        default_factory=lambda: list(ALL_EVENTS),
        min_length=1,
        description="The events to send it (default: all).",
    )
    description: str = Field(default="", max_length=200)


class WebhookEndpointUpdate(RequestSchema):
    is_active: bool | None = Field(
        default=None, description="false: send it no new events; queued ones wait."
    )
    events: list[WebhookEventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=200)


class WebhookEndpointRead(Schema):
    id: int
    url: str
    description: str
    events: list[str]
    is_active: bool
    secret_hint: str = Field(description="The secret's first characters, to tell it apart.")
    created_at: datetime
    updated_at: datetime
    deliveries: dict[str, int] = Field(
        default_factory=dict, description="Delivery counts by status."
    )


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(
        description="The signing secret. It is shown this once: store it with the receiver now."
    )


class WebhookDeliveryRead(Schema):
    id: int
    endpoint_id: int
    event_id: str = Field(description="The event's id (the same for every endpoint and retry).")
    event_type: WebhookEventType
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookAttempt(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    by: str = Field(description="The process that made the attempt.")


class WebhookDeliveryDetail(WebhookDeliveryRead):
    payload: dict[str, Any] = Field(description="The event exactly as it is sent.")
    history: list[WebhookAttempt]


def endpoint_read(endpoint: WebhookEndpoint, deliveries: dict[str, int]) -> WebhookEndpointRead:
    read = WebhookEndpointRead.model_validate(endpoint)
    return read.model_copy(update={"deliveries": deliveries})


def delivery_detail(delivery: WebhookDelivery) -> WebhookDeliveryDetail:
    summary = WebhookDeliveryRead.model_validate(delivery)
    return WebhookDeliveryDetail(
        **summary.model_dump(),
        payload=json.loads(delivery.body),
        history=[WebhookAttempt.model_validate(a) for a in delivery.history],
    )
