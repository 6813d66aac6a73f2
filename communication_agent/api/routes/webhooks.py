"""Webhook endpoints and deliveries: admins only (a receiver's URL and its traffic are
configuration, and a new endpoint's secret is shown in the answer)."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from communication_agent.api.deps import AdminActor, SessionDep
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse, PageOf
from communication_agent.models.schemas.webhooks import (
    WebhookDeliveryDetail,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    delivery_detail,
    endpoint_read,
)
from communication_agent.models.webhooks import DeliveryStatus, WebhookEventType
from communication_agent.services import webhooks

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

EndpointId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The endpoint's id.")]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The delivery's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such endpoint or delivery."}
}


@router.get("", response_model=list[WebhookEndpointRead], summary="Webhook endpoints")
async def list_endpoints(session: SessionDep, _actor: AdminActor) -> list[WebhookEndpointRead]:
    return [endpoint_read(s.endpoint, s.deliveries) for s in await webhooks.list_endpoints(session)]


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    summary="Add an endpoint; the answer holds its signing secret, shown this once",
)
async def create_endpoint(
    request: Request, session: SessionDep, actor: AdminActor, body: WebhookEndpointCreate
) -> WebhookEndpointCreated:
    created = await webhooks.create_endpoint(
        session,
        actor,
        request.app.state.secret_key.get_secret_value(),
        url=body.url,
        events=[e.value for e in body.events],
        description=body.description,
    )
    read = endpoint_read(created.endpoint, {})
    return WebhookEndpointCreated(**read.model_dump(), secret=created.secret)


@router.get(
    "/deliveries",
    response_model=PageOf[WebhookDeliveryRead],
    summary="Recent deliveries, newest first",
)
async def list_deliveries(
    session: SessionDep,
    _actor: AdminActor,
    endpoint_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    status: DeliveryStatus | None = None,
    event_type: WebhookEventType | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PageOf[WebhookDeliveryRead]:
    page = await webhooks.list_deliveries(
        session,
        endpoint_id=endpoint_id,
        status=status.value if status else None,
        event_type=event_type.value if event_type else None,
        cursor=cursor,
        limit=limit,
    )
    return PageOf(
        items=[WebhookDeliveryRead.model_validate(d) for d in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=WebhookDeliveryDetail,
    responses=NOT_FOUND,
    summary="A delivery with its payload and every attempt",
)
async def get_delivery(
    session: SessionDep, _actor: AdminActor, delivery_id: DeliveryId
) -> WebhookDeliveryDetail:
    return delivery_detail(await webhooks.get_delivery(session, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=201,
    response_model=WebhookDeliveryRead,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "Still queued, or the endpoint is off."},
    },
    summary="Queue a delivered or failed event again (same event id)",
)
async def redeliver(
    session: SessionDep, actor: AdminActor, delivery_id: DeliveryId
) -> WebhookDeliveryRead:
    return WebhookDeliveryRead.model_validate(await webhooks.redeliver(session, actor, delivery_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointRead,
    responses=NOT_FOUND,
    summary="Enable or disable an endpoint, change its events or description",
)
async def update_endpoint(
    session: SessionDep, actor: AdminActor, endpoint_id: EndpointId, body: WebhookEndpointUpdate
) -> WebhookEndpointRead:
    await webhooks.update_endpoint(
        session,
        actor,
        endpoint_id,
        is_active=body.is_active,
        events=[e.value for e in body.events] if body.events is not None else None,
        description=body.description,
    )
    [summary] = await webhooks.list_endpoints(session, endpoint_id)
    return endpoint_read(summary.endpoint, summary.deliveries)


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete an endpoint and its deliveries",
)
async def delete_endpoint(session: SessionDep, actor: AdminActor, endpoint_id: EndpointId) -> None:
    await webhooks.delete_endpoint(session, actor, endpoint_id)
