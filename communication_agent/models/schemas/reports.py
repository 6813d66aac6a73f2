"""The reporting figures' API shape (`GET /api/v1/reports/summary`)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from communication_agent.models.schemas.common import Schema


class DayVolumeRead(Schema):
    day: date = Field(description="A UTC day of the window; every day is present.")
    total: int = Field(description="Tickets created that day.")
    by_state: dict[str, int] = Field(
        description="Those tickets by their current state; every state, zero-filled."
    )
    by_category: dict[str, int] = Field(
        description="Those tickets by category (`uncategorised` for none); every category "
        "seen in the window, zero-filled."
    )


class DurationStatsRead(Schema):
    count: int = Field(description="Tickets created in the window that have the figure.")
    median_seconds: float | None = Field(description="Null when `count` is 0.")
    p90_seconds: float | None = Field(
        description="90th percentile, by linear interpolation between closest ranks "
        "(as numpy's default and PERCENTILE.INC); null when `count` is 0."
    )


class BacklogBucketRead(Schema):
    label: str = Field(
        description="Age since creation: `<1 day`, `1-3 days`, `3-7 days`, `7-30 days`, "
        "`>30 days` (lower bound included, upper excluded)."
    )
    total: int = Field(description="Open tickets (any state but DONE) of that age now.")
    by_state: dict[str, int] = Field(description="The same by open state, zero-filled.")


class DraftAcceptanceRead(Schema):
    sent: int = Field(description="Replies sent in the window: the sum of the four below.")
    unchanged: int = Field(description="The model's proposal sent as it was (distance 0).")
    lightly_edited: int = Field(description="Edit distance above 0 and at most 0.2.")
    rewritten: int = Field(description="Edit distance above 0.2.")
    human_written: int = Field(description="Written by an operator: no proposal to compare.")


class OperatorActivityRead(Schema):
    user_id: int
    email: str
    display_name: str
    approvals: int = Field(description="Drafts approved (`draft.approved`).")
    replies_sent: int = Field(description="Replies sent in the window that this user approved.")
    edits: int = Field(description="Draft edits (`draft.edited`).")
    drafts_written: int = Field(description="Drafts written from scratch (`draft.created`).")
    discards: int = Field(description="Drafts discarded (`draft.discarded`).")
    state_changes: int = Field(description="Ticket state changes (`ticket.state_changed`).")
    notes: int = Field(description="Internal notes (`note.added`).")
    assignments: int = Field(description="Assignments and unassignments (`ticket.assigned`).")


class ReportSummaryRead(Schema):
    start: date = Field(description="First UTC day of the window.")
    end: date = Field(description="Last UTC day of the window (inclusive).")
    mailbox_id: int | None = Field(description="The mailbox reported on; null for all.")
    generated_at: datetime = Field(description="When the backlog ages were measured.")
    tickets_created: int = Field(description="Tickets created in the window.")
    states: list[str] = Field(description="Every ticket state, in lifecycle order.")
    categories: list[str] = Field(description="Every category seen in the window, sorted.")
    volume: list[DayVolumeRead] = Field(description="One entry per day of the window, in order.")
    first_response: DurationStatsRead = Field(
        description="From creation to the first reply, for tickets created in the window."
    )
    resolution: DurationStatsRead = Field(
        description="From creation to DONE, for tickets created in the window and DONE now."
    )
    backlog: list[BacklogBucketRead] = Field(
        description="Open tickets now by age, youngest bucket first (not limited to the window)."
    )
    draft_acceptance: DraftAcceptanceRead
    operators: list[OperatorActivityRead] = Field(
        description="Users who did anything counted here in the window, by email."
    )
