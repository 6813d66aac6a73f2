"""Liveness and readiness, for process supervisors and load balancers: no authentication.

`/readyz` answers 503 only when this process cannot serve (database unreachable or slow,
schema not current); a mailbox in trouble makes it `degraded` with 200 (see
`services.health`). Anonymous callers see states and counts; signed-in callers the details.
"""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from communication_agent.api.deps import optional_actor
from communication_agent.core.config import Settings
from communication_agent.models.schemas.health import (
    DatabaseCheck,
    MailboxCheck,
    MailboxesCheck,
    ReadinessRead,
    SchemaCheck,
)
from communication_agent.services import health
from communication_agent.services.health import MailboxStatus, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up (no authentication)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessRead,
    responses={503: {"model": ReadinessRead, "description": "Database or schema not usable."}},
    summary="Readiness: database, schema and mailbox sync states (no authentication)",
)
async def readyz(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    report = await health.readiness(
        request.app.state.engine,
        stale_after=settings.sync_stale_after,
        time_limit=settings.readyz_timeout_seconds,
    )
    # Credentials are looked at only once the database answers: it is where they are checked.
    detailed = report.ready and await optional_actor(request) is not None
    body = readiness_read(report, detailed=detailed)
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True, exclude_none=True),
        status_code=200 if report.ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def readiness_read(report: Readiness, *, detailed: bool) -> ReadinessRead:
    mailboxes = None
    if report.mailboxes is not None:
        by_state: dict[str, int] = {}
        for mailbox in report.mailboxes:
            by_state[mailbox.state.value] = by_state.get(mailbox.state.value, 0) + 1
        mailboxes = MailboxesCheck(
            total=len(report.mailboxes),
            by_state=by_state,
            items=[_mailbox_check(m, detailed=detailed) for m in report.mailboxes],
        )
    return ReadinessRead(
        status=report.status,
        detailed=detailed,
        database=DatabaseCheck(status=report.database.value),
        schema=SchemaCheck(
            status=report.schema.value if report.schema else None,
            revision=report.schema_revision if detailed else None,
            head=report.schema_head if detailed else None,
        ),
        mailboxes=mailboxes,
    )


def _mailbox_check(status: MailboxStatus, *, detailed: bool) -> MailboxCheck:
    if not detailed:
        return MailboxCheck(id=status.id, state=status.state.value)
    return MailboxCheck(
        id=status.id,
        state=status.state.value,
        name=status.name,
        provider=status.provider,
        consecutive_errors=status.consecutive_errors,
        last_error=status.last_error,
        last_success_at=status.last_success_at,
        lag_seconds=round(status.lag_seconds, 3),
    )
