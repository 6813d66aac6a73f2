"""Reports: the figures of `GET /api/v1/reports/summary`, drawn as charts, with CSV export."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from communication_agent.api.console import ConsoleDep, render
from communication_agent.api.deps import SessionDep
from communication_agent.models.schemas.common import MAX_DB_INT
from communication_agent.services import mailboxes, reports
from communication_agent.ui.charts import stacked_bars

router = APIRouter(include_in_schema=False)


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    start: date | None = None,
    end: date | None = None,
    mailbox_id: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
) -> HTMLResponse:
    start, end = reports.resolve_window(start, end)
    figures = await reports.summary(session, start=start, end=end, mailbox_id=mailbox_id)
    days = len(figures.volume)
    every = max(1, days // 10)
    by_state = stacked_bars(
        [(d.day.strftime("%d %b"), d.by_state) for d in figures.volume],
        figures.states,
        label_every=every,
    )
    by_category = stacked_bars(
        [(d.day.strftime("%d %b"), d.by_category) for d in figures.volume],
        figures.categories,
        label_every=every,
    )
    backlog = stacked_bars(
        [(b.label, b.by_state) for b in figures.backlog],
        [s for s in figures.states if s != "DONE"],
    )
    acceptance = figures.draft_acceptance
    accepted = stacked_bars(
        [
            ("unchanged", {"unchanged": acceptance.unchanged}),
            ("lightly edited", {"lightly edited": acceptance.lightly_edited}),
            ("rewritten", {"rewritten": acceptance.rewritten}),
            ("human-written", {"human-written": acceptance.human_written}),
        ],
        ["unchanged", "lightly edited", "rewritten", "human-written"],
    )
    query = {"start": start.isoformat(), "end": end.isoformat()}
    if mailbox_id is not None:
        query["mailbox_id"] = str(mailbox_id)
    return render(
        request,
        "reports.html",
        console,
        nav="reports",
        figures=figures,
        charts={
            "by_state": by_state,
            "by_category": by_category,
            "backlog": backlog,
            "acceptance": accepted,
        },
        mailboxes=await mailboxes.all_mailboxes(session),
        csv_url="/api/v1/reports/summary.csv?" + urlencode(query),
    )
