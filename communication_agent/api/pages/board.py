"""The board: a column per state, filters in the query string (so a reload, a bookmark and
the self-refresh all keep them), and a page of more cards per column on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from communication_agent.api.console import ConsoleDep, render
from communication_agent.api.deps import SessionDep
from communication_agent.models.enums import Priority, TicketState
from communication_agent.services import board, mailboxes
from communication_agent.services.errors import InvalidInputError
from communication_agent.services.tickets import TicketFilters

router = APIRouter(include_in_schema=False)
REFRESH_SECONDS = 20


@dataclass(frozen=True)
class BoardQuery:
    """The filters as the operator set them (strings from a GET form), kept for the links."""

    mine: bool
    unassigned: bool
    mailbox: str
    priority: str
    category: str
    q: str

    def query_string(self) -> str:
        pairs = [(k, v) for k, v in self.__dict__.items() if v not in ("", False)]
        return urlencode([(k, "1" if v is True else v) for k, v in pairs])

    @property
    def active(self) -> bool:
        return bool(self.query_string())

    def filters(self, user_id: int, categories: list[str]) -> TicketFilters:
        priority = None
        if self.priority:
            try:
                priority = Priority(self.priority)
            except ValueError:
                names = ", ".join(p.value for p in Priority)
                raise InvalidInputError(
                    f"Unknown priority {self.priority!r}; use {names}."
                ) from None
        mailbox_id = None
        if self.mailbox:
            if not self.mailbox.isdigit() or not 0 < int(self.mailbox) < 2**31:
                raise InvalidInputError(f"Mailbox must be a mailbox id, not {self.mailbox!r}.")
            mailbox_id = int(self.mailbox)
        if self.category and self.category not in categories:
            raise InvalidInputError(
                f"Unknown category {self.category!r}; use one of: {', '.join(categories)}."
            )
        return TicketFilters(
            priorities=(priority,) if priority else (),
            assignee_id=user_id if self.mine else None,
            unassigned=self.unassigned and not self.mine,
            mailbox_id=mailbox_id,
            category=self.category or None,
            text=self.q.strip() or None,
        )


def _query(
    mine: bool, unassigned: bool, mailbox: str, priority: str, category: str, q: str
) -> BoardQuery:
    return BoardQuery(mine, unassigned, mailbox, priority, category, q)


Text = Annotated[str, Query(max_length=200)]


@router.get("/board", response_class=HTMLResponse)
async def board_page(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    mine: bool = False,
    unassigned: bool = False,
    mailbox: Text = "",
    priority: Text = "",
    category: Text = "",
    q: Text = "",
) -> HTMLResponse:
    query = _query(mine, unassigned, mailbox, priority, category, q)
    categories = request.app.state.settings.categories
    columns = await board.board(session, query.filters(console.actor.user_id or 0, categories))
    return render(
        request,
        "board.html",
        console,
        nav="board",
        columns=columns,
        query=query,
        mailboxes=await mailboxes.all_mailboxes(session),
        categories=categories,
        priorities=list(Priority),
        refresh_seconds=REFRESH_SECONDS,
    )


@router.get("/board/columns/{state}", response_class=HTMLResponse)
async def more_cards(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    state: TicketState,
    cursor: Annotated[str, Query(max_length=500)],
    mine: bool = False,
    unassigned: bool = False,
    mailbox: Text = "",
    priority: Text = "",
    category: Text = "",
    q: Text = "",
) -> HTMLResponse:
    """The next page of one column, appended in place of its "more" button."""
    query = _query(mine, unassigned, mailbox, priority, category, q)
    filters = query.filters(console.actor.user_id or 0, request.app.state.settings.categories)
    column = await board.column(session, filters, state, cursor=cursor)
    return render(request, "_cards.html", console, column=column, query=query)
