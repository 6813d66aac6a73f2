"""The readiness report of `GET /readyz`: states and counts for anyone, details when signed in.

A load balancer calls `/readyz` without credentials, so the anonymous answer says only what a
prober needs (states, counts, mailbox ids). A caller with a valid token or console session
(any role: viewers already see mailbox health in the API) also gets revisions, mailbox names,
error counts and the last error text.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class DatabaseCheck(BaseModel):
    status: str = Field(description="`ok`, `unreachable` or `timeout`.")


class SchemaCheck(BaseModel):
    status: str | None = Field(
        default=None,
        description="`current`, `behind` (run `commagent db upgrade`), `missing`, "
        "`unknown_revision` (migrated by a newer version); absent when the database did not "
        "answer.",
    )
    revision: str | None = Field(default=None, description="Signed-in callers only.")
    head: str | None = Field(default=None, description="Signed-in callers only.")


class MailboxCheck(BaseModel):
    """Anonymous callers get `id` and `state`; the other fields are for signed-in callers."""

    id: int
    state: str = Field(
        description="`ok`, `pending` (never synced yet), `syncing`, `failing`, "
        "`needs_reauth` or `stale` (no successful sync for COMMAGENT_SYNC_STALE_SECONDS)."
    )
    name: str | None = None
    provider: str | None = None
    consecutive_errors: int | None = None
    last_error: str | None = None
    last_success_at: datetime | None = None
    lag_seconds: float | None = None


class MailboxesCheck(BaseModel):
    total: int
    by_state: dict[str, int]
    items: list[MailboxCheck]


class ReadinessRead(BaseModel):
    status: str = Field(
        description="`ready`; `degraded` (some mailbox is failing, stale or must be "
        "reconnected: still 200, the process serves); `unready` (503: database or schema)."
    )
    detailed: bool = Field(description="Whether the caller was signed in and sees details.")
    database: DatabaseCheck
    schema_: SchemaCheck = Field(alias="schema", serialization_alias="schema")
    mailboxes: MailboxesCheck | None = Field(
        default=None,
        description="Active mailboxes; absent when the database or schema check failed.",
    )
