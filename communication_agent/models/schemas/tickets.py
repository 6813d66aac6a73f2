from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, Field

from communication_agent.models.enums import Direction, DraftStatus, Priority, TicketState
from communication_agent.models.schemas.common import DbId, RequestSchema, Schema
from communication_agent.models.schemas.users import UserRef


class ContactRead(Schema):
    id: int
    email: str
    name: str


class TicketSummary(Schema):
    id: int
    subject: str
    state: TicketState
    priority: Priority
    category: str | None
    tags: list[str]
    mailbox_id: int
    customer: ContactRead = Field(validation_alias=AliasChoices("contact", "customer"))
    assignee: UserRef | None
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime
    last_customer_message_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    version: int = Field(description="Send it back with changes; a stale version gets 409.")


class AttachmentRead(Schema):
    id: int
    filename: str
    content_type: str
    size: int


class MessageRead(Schema):
    id: int
    direction: Direction
    provider_message_id: str | None
    provider_thread_id: str | None
    message_id_header: str | None
    in_reply_to: str | None
    references: str | None
    from_address: str
    from_name: str
    to_addresses: list[str]
    cc_addresses: list[str]
    subject: str
    sent_at: datetime | None
    received_at: datetime
    body_text: str
    body_html: str | None = Field(description="Sanitised HTML, safe to embed.")
    new_content_text: str
    is_automated: bool
    quarantine_reason: str | None
    attachments: list[AttachmentRead] = Field(
        description="Download with GET /api/v1/messages/{id}/attachments/{attachment_id}."
    )


class NoteRead(Schema):
    id: int
    ticket_id: int
    author_id: int
    body: str
    created_at: datetime


class TriageRead(Schema):
    id: int
    message_id: int | None
    category: str
    priority: Priority
    sentiment: str
    language: str
    summary: str
    needs_reply: bool
    suggested_state: TicketState | None = Field(description="The model's advice; see routing.")
    confidence: float
    flags: list[str] = Field(description="Review flags: text aimed at the model, hidden HTML.")
    routing: str | None = Field(description="What the routing policy did, and why.")
    provider: str
    model: str
    created_at: datetime


class PlanStepRead(Schema):
    action: str
    reason: str
    citations: list[str]


class DraftRead(Schema):
    id: int
    status: DraftStatus
    status_reason: str | None
    body: str
    plan: list[PlanStepRead] = Field(description="The operator's steps, in order.")
    citations: list[str] = Field(description='What the draft relies on: "message:<id>", ...')
    needs_info: list[str] = Field(description="Facts the reply asks the customer for.")
    review_flags: list[str] = Field(description="Why an operator should look twice.")
    language: str | None
    instruction: str | None = Field(description="The operator's wish it was regenerated with.")
    source_message_id: int | None
    author: str
    last_editor_id: int | None
    approved_by_id: int | None
    approved_at: datetime | None
    edit_distance: float | None = Field(
        description="How much the approved text differs from the model's proposal (0 to 1)."
    )
    sent_at: datetime | None
    version: int = Field(description="Send it back with changes; a stale version gets 409.")
    created_at: datetime
    updated_at: datetime


class DraftRequest(RequestSchema):
    instruction: str | None = Field(
        default=None,
        max_length=2000,
        description='How to change the draft, e.g. "shorter, offer a refund".',
    )
    body: str | None = Field(
        default=None,
        max_length=20_000,
        description="Write the draft yourself instead (no model is asked).",
    )


class DraftEdit(RequestSchema):
    body: str = Field(min_length=1, max_length=20_000)
    version: DbId | None = Field(
        default=None, description="The version edited (or send it as If-Match)."
    )


class DraftVersionRef(RequestSchema):
    version: DbId = Field(description="The draft version this action is based on.")


class DraftVersionRead(Schema):
    version: int
    body: str
    author: str
    author_user_id: int | None
    created_at: datetime


class ModelCallRead(Schema):
    id: int
    task: str
    provider: str
    model: str
    prompt_version: str
    latency_ms: int
    tokens_in: int
    tokens_out: int
    outcome: str
    error: str | None
    created_at: datetime


class TicketDetailRead(TicketSummary):
    messages: list[MessageRead]
    notes: list[NoteRead]
    latest_triage: TriageRead | None
    latest_draft: DraftRead | None


class StateChange(RequestSchema):
    state: TicketState
    version: DbId = Field(description="The ticket version this change is based on.")
    reason: str | None = Field(default=None, max_length=1000)


class Assignment(RequestSchema):
    assignee_id: DbId | None = Field(description="A user id, or null to unassign.")
    version: DbId | None = Field(
        default=None, description="Optional: refuse with 409 if the ticket has changed."
    )


class NoteCreate(RequestSchema):
    body: str = Field(min_length=1, max_length=20_000)


def ticket_detail_read(
    ticket: object,
    *,
    messages: list[Any],
    notes: list[Any],
    latest_triage: Any,
    latest_draft: Any,
) -> TicketDetailRead:
    """Combine a ticket entity and its related rows into the detail schema."""
    summary = TicketSummary.model_validate(ticket)
    return TicketDetailRead(
        **dict(summary),
        messages=[MessageRead.model_validate(m) for m in messages],
        notes=[NoteRead.model_validate(n) for n in notes],
        latest_triage=TriageRead.model_validate(latest_triage) if latest_triage else None,
        latest_draft=DraftRead.model_validate(latest_draft) if latest_draft else None,
    )
