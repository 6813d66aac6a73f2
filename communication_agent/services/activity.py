"""Writing and reading the append-only activity log.

`record` only adds the entry to the caller's session: the entry commits (or rolls back) together
with the change it describes, which is what makes the log trustworthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import ActivityEntry, Ticket
from communication_agent.services.actors import Actor
from communication_agent.services.pagination import Page, newest_first_page


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    ticket_id: int | None = None,
    details: dict[str, Any] | None = None,
    ticket: Ticket | None = None,
) -> ActivityEntry:
    """`ticket` instead of `ticket_id` links an entry to a ticket that has no id yet."""
    entry = ActivityEntry(
        ticket_id=ticket_id,
        actor_type=actor.type.value,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_name=actor.name,
        action=action,
        details=details or {},
    )
    if ticket is not None:
        entry.ticket = ticket
    session.add(entry)
    return entry


@dataclass
class EntryBatch:
    """Entries gathered while a batch of changes is built, written with one multi-row INSERT.

    `record` adds an ORM object per entry, which SQLite then inserts one statement at a time
    (it cannot match RETURNING rows to objects otherwise). Bulk ingestion writes thousands of
    entries whose ids nobody needs back: `write` them after the flush that gave their tickets
    ids, in the same transaction, so they still commit or roll back with what they describe.
    """

    rows: list[tuple[Ticket | None, dict[str, Any]]] = field(default_factory=list)

    def add(
        self,
        actor: Actor,
        action: str,
        *,
        ticket: Ticket | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.rows.append(
            (
                ticket,
                {
                    "actor_type": actor.type.value,
                    "actor_user_id": actor.user_id,
                    "actor_token_id": actor.token_id,
                    "actor_name": actor.name,
                    "action": action,
                    "details": details or {},
                },
            )
        )

    async def write(self, session: AsyncSession) -> None:
        """Call after flushing (tickets must have ids); empties the batch."""
        if not self.rows:
            return
        rows = [
            {**values, "ticket_id": ticket.id if ticket is not None else None}
            for ticket, values in self.rows
        ]
        self.rows.clear()
        await session.execute(insert(ActivityEntry), rows)


async def list_activity(
    session: AsyncSession,
    *,
    ticket_id: int | None = None,
    action: str | None = None,
    actor_user_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ActivityEntry]:
    """Newest first. The cursor is the last id seen, so pages never repeat or skip entries even
    while new ones are being written."""
    query: Select[ActivityEntry] = select(ActivityEntry)
    if ticket_id is not None:
        query = query.where(ActivityEntry.ticket_id == ticket_id)
    if action is not None:
        query = query.where(ActivityEntry.action == action)
    if actor_user_id is not None:
        query = query.where(ActivityEntry.actor_user_id == actor_user_id)
    return await newest_first_page(session, query, ActivityEntry.id, cursor=cursor, limit=limit)
