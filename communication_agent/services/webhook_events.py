"""Webhook events, queued in the transaction of the change they report (a transactional outbox).

The service making a change calls one of the event functions below next to its activity-log
entry. The event is staged on the session and written by the next flush (or, when nothing is
left to flush, just before the commit): one `webhook_deliveries` row per active endpoint
subscribed to the event, in the same transaction. So an event is never lost once its change
commits, and never sent for a change that rolled back (a rollback also discards the events
staged in it but not yet written). Staging lets `apply_transition` stay a plain function and
still report tickets that get their id only at that flush (ingestion files new tickets in
batches).

Payloads carry ids, states, categories and who acted, never email text, subjects or customer
addresses: they travel to third-party services and chat channels whose audience is wider than
the console's, and subjects routinely hold personal details. `ticket_path` is one click away.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from communication_agent.models import Draft, Ticket, WebhookDelivery, WebhookEndpoint
from communication_agent.models.base import utcnow
from communication_agent.models.webhooks import WebhookEventType
from communication_agent.services.actors import Actor

TICKET_STATE_CHANGED = WebhookEventType.TICKET_STATE_CHANGED.value
DRAFT_READY = WebhookEventType.DRAFT_READY.value
REPLY_SENT = WebhookEventType.REPLY_SENT.value
EVENT_TYPES = tuple(e.value for e in WebhookEventType)
_STAGED = "commagent_webhook_events"


@dataclass
class _Staged:
    event_type: str
    data: dict[str, Any]
    ticket: Ticket
    created_at: datetime
    transaction: SessionTransaction | None  # discarded if this one rolls back before a flush

    def body(self) -> tuple[str, str]:
        """(event id, the JSON body); the ticket has its id by now."""
        event_id = f"evt_{uuid.uuid4().hex}"
        data = {
            "ticket_id": self.ticket.id,
            "mailbox_id": self.ticket.mailbox_id,
            **self.data,
            "ticket_path": f"/tickets/{self.ticket.id}",
        }
        envelope = {
            "id": event_id,
            "type": self.event_type,
            "created_at": self.created_at.isoformat(),
            "data": data,
        }
        return event_id, json.dumps(envelope, separators=(",", ":"), sort_keys=True)


def ticket_state_changed(
    session: AsyncSession,
    actor: Actor,
    ticket: Ticket,
    *,
    before: str,
    after: str,
    reason: str | None,
) -> None:
    _stage(
        session,
        TICKET_STATE_CHANGED,
        ticket,
        {
            "from": before,
            "to": after,
            "actor": actor.label,
            "actor_user_id": actor.user_id,
            "reason": reason or "",
        },
    )


def draft_ready(session: AsyncSession, ticket: Ticket, draft: Draft) -> None:
    """A model's proposal waits for review."""
    _stage(
        session,
        DRAFT_READY,
        ticket,
        {
            "draft_id": draft.id,
            "category": ticket.category,
            "priority": ticket.priority,
            "language": draft.language,
            "review_flags": list(draft.review_flags or []),
        },
    )


def reply_sent(session: AsyncSession, ticket: Ticket, draft: Draft, *, message_id: str) -> None:
    _stage(
        session,
        REPLY_SENT,
        ticket,
        {
            "draft_id": draft.id,
            "message_id_header": message_id,
            "approved_by_user_id": draft.approved_by_id,
            "sent_at": draft.sent_at.isoformat() if draft.sent_at else None,
        },
    )


def _stage(session: AsyncSession, event_type: str, ticket: Ticket, data: dict[str, Any]) -> None:
    sync = session.sync_session
    staged: list[_Staged] = sync.info.setdefault(_STAGED, [])
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    staged.append(_Staged(event_type, data, ticket, utcnow(), transaction))


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: UOWTransaction) -> None:
    _write_staged(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    """An event staged after the last flush of a change (the session is clean, so the commit
    would not flush) is written here."""
    if session.info.get(_STAGED):
        session.flush()  # anything still pending first: its ids go into the payloads
        _write_staged(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    """Nothing staged outlives its session's transaction (a session closed without a commit
    or a rollback, then used again, starts clean)."""
    if transaction.parent is None:
        session.info.pop(_STAGED, None)


def _write_staged(session: Session) -> None:
    """Fan staged events out to the subscribed endpoints, inside the session's transaction."""
    staged: list[_Staged] = session.info.pop(_STAGED, [])
    if not staged:
        return
    connection = session.connection()
    endpoints = connection.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(WebhookEndpoint.is_active)
    ).all()
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for item in staged:
        subscribed = [endpoint_id for endpoint_id, events in endpoints if item.event_type in events]
        if not subscribed:
            continue
        event_id, body = item.body()
        rows.extend(
            {
                "endpoint_id": endpoint_id,
                "event_id": event_id,
                "event_type": item.event_type,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "history": [],
                "created_at": now,
                "updated_at": now,
            }
            for endpoint_id in subscribed
        )
    if rows:
        connection.execute(insert(WebhookDelivery), rows)


@event.listens_for(Session, "after_soft_rollback")
def _discard_rolled_back(session: Session, previous: SessionTransaction) -> None:
    """Events staged in a transaction (or savepoint) that rolled back before any flush wrote
    them describe nothing: drop them. Rows already written roll back with the transaction."""
    staged: list[_Staged] | None = session.info.get(_STAGED)
    if not staged:
        return
    session.info[_STAGED] = [s for s in staged if not _within(s.transaction, previous)]


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    if transaction is None:
        return ancestor.parent is None
    current: SessionTransaction | None = transaction
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False
