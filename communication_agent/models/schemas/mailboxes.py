from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from communication_agent.models.schemas.common import Schema


class MailboxRead(Schema):
    id: int
    name: str
    address: str
    provider: str
    is_active: bool
    token_state: str = Field(description="`none`, `ok` or `needs_reauth` (reconnect the mailbox).")
    token_error: str | None
    sync_checkpoint: str | None
    last_sync_started_at: datetime | None
    last_sync_succeeded_at: datetime | None
    consecutive_errors: int
    last_error: str | None
    syncing: bool = Field(description="A sync holds the mailbox's lease right now.")
    open_sync_errors: int = Field(
        description="Messages that failed to download and will be retried."
    )
    quarantined: int = Field(description="Messages that could not be parsed, kept for review.")


class SyncResult(Schema):
    fetched: int
    new_messages: int
    new_tickets: int
    threaded: int
    duplicates: int
    quarantined: int
    errors: int
    ignored: int = Field(description="Mail the mailbox sent that belongs to no ticket.")


class QuarantinedRead(Schema):
    id: int
    mailbox_id: int
    provider_message_id: str | None
    reason: str
    size: int
    created_at: datetime


def mailbox_read(health: Any) -> MailboxRead:
    """Map a `MailboxHealth` (the mailbox row plus derived figures) to the API shape."""
    stored = {name: getattr(health.mailbox, name) for name in _STORED_FIELDS}
    return MailboxRead(
        **stored,
        syncing=health.syncing,
        open_sync_errors=health.open_sync_errors,
        quarantined=health.quarantined,
    )


_STORED_FIELDS = [
    n for n in MailboxRead.model_fields if n not in {"syncing", "open_sync_errors", "quarantined"}
]
