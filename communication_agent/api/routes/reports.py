from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from communication_agent.api.deps import CurrentActor, SessionDep
from communication_agent.models.schemas.common import MAX_DB_INT, ErrorResponse
from communication_agent.models.schemas.reports import ReportSummaryRead
from communication_agent.services import reports
from communication_agent.services.report_csv import summary_csv

router = APIRouter(prefix="/reports", tags=["reports"])

Start = Annotated[
    date | None,
    Query(description="First UTC day, `YYYY-MM-DD`; default: 30 days ending on `end`."),
]
End = Annotated[date | None, Query(description="Last UTC day (inclusive); default: today.")]
MailboxId = Annotated[
    int | None, Query(ge=1, le=MAX_DB_INT, description="Only this mailbox; default: all.")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such mailbox."},
    422: {"model": ErrorResponse, "description": "End before start, or more than 366 days."},
}


@router.get(
    "/summary",
    response_model=ReportSummaryRead,
    responses=ERRORS,
    summary="Volume, response and resolution times, backlog, draft acceptance, operators",
)
async def report_summary(
    session: SessionDep,
    _actor: CurrentActor,
    start: Start = None,
    end: End = None,
    mailbox_id: MailboxId = None,
) -> ReportSummaryRead:
    start, end = reports.resolve_window(start, end)
    figures = await reports.summary(session, start=start, end=end, mailbox_id=mailbox_id)
    return ReportSummaryRead.model_validate(figures)


@router.get(
    "/summary.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
    summary="The same figures as CSV: one `section,key,subkey,value` row per figure",
)
async def report_summary_csv(
    session: SessionDep,
    _actor: CurrentActor,
    start: Start = None,
    end: End = None,
    mailbox_id: MailboxId = None,
) -> Response:
    start, end = reports.resolve_window(start, end)
    figures = await reports.summary(session, start=start, end=end, mailbox_id=mailbox_id)
    return Response(
        content=summary_csv(figures),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="report-{start}-{end}.csv"'},
    )
