"""`GET /metrics`: Prometheus text format, for admins and for scrapers holding
COMMAGENT_METRICS_TOKEN (see `core.metrics` for what is counted where)."""

from fastapi import APIRouter, Request, Response

from communication_agent.api.deps import MetricsReader
from communication_agent.core import metrics
from communication_agent.core.config import Settings
from communication_agent.services import health

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
            "description": "The Prometheus text format, or OpenMetrics when `Accept` asks.",
        }
    },
    summary="Prometheus metrics (an admin, or COMMAGENT_METRICS_TOKEN)",
)
async def scrape(request: Request, _reader: MetricsReader) -> Response:
    settings: Settings = request.app.state.settings
    figures = await health.read_shared_figures(
        request.app.state.sessionmaker,
        stale_after=settings.sync_stale_after,
        time_limit=settings.readyz_timeout_seconds,
    )
    body, content_type = metrics.render(figures, request.headers.get("accept"))
    return Response(body, media_type=content_type)
