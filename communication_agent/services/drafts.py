"""The draft lifecycle: nothing leaves without an operator's approval of an exact text.

    proposed (model) → edited (operator, any number of times) → approved → sending → sent
    any of proposed, edited, failed → discarded;  failed → approved again (retry) or edited;
    approved (not yet being sent) → edited (recalled within the undo window)

Every text is kept as a `DraftVersion` with its author; every change takes the version the
client saw and refuses a stale one (409 with the current draft). Approval records who approved
which text (its SHA-256), against which ticket state and newest customer message, and writes
the outbox entry in the same transaction; the sender refuses to send anything else (see
`services/sending.py`). With `COMMAGENT_REQUIRE_SECOND_APPROVER` the approver must not be the
last editor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from difflib import SequenceMatcher

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.config import Settings
from communication_agent.core.db import begin_write
from communication_agent.models import Draft, DraftVersion, Message, OutboxEntry, Ticket
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, DraftStatus
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)

EDITABLE = {DraftStatus.PROPOSED, DraftStatus.EDITED, DraftStatus.FAILED}
APPROVABLE = {DraftStatus.PROPOSED, DraftStatus.EDITED}
DISCARDABLE = {DraftStatus.PROPOSED, DraftStatus.EDITED, DraftStatus.FAILED}


class StaleDraftError(ConflictError):
    code = "stale_version"


class DraftStateError(ConflictError):
    code = "invalid_draft_state"


@dataclass(frozen=True)
class ApprovalRules:
    require_second_approver: bool = False
    send_delay: timedelta = timedelta(0)


def rules_from(settings: Settings) -> ApprovalRules:
    return ApprovalRules(
        require_second_approver=settings.require_second_approver,
        send_delay=timedelta(seconds=settings.send_delay_seconds),
    )


def text_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


MAX_COMPARED = 4000  # characters: difflib is quadratic, and this runs inside the approval


def edit_distance(proposed: str, final: str) -> float:
    """0 when the operator sent the proposal unchanged, 1 when nothing of it is left. Long
    texts are compared by their first `MAX_COMPARED` characters and their lengths."""
    if proposed == final:
        return 0.0
    a, b = proposed[:MAX_COMPARED], final[:MAX_COMPARED]
    similarity = SequenceMatcher(None, a, b, autojunk=False).ratio()
    if len(proposed) > MAX_COMPARED or len(final) > MAX_COMPARED:
        similarity *= min(len(proposed), len(final)) / max(len(proposed), len(final))
    return round(1 - similarity, 4)


async def load(session: AsyncSession, draft_id: int, *, for_update: bool = False) -> Draft:
    """The draft, fresh from the database. Writers lock its row (`for_update`): on PostgreSQL
    two approvals of one version then run one after the other, and the second sees the first's
    new version and is refused; SQLite's single writer gives the same order."""
    draft = await session.get(
        Draft, draft_id, populate_existing=True, with_for_update=for_update or None
    )
    if draft is None:
        raise NotFoundError(f"draft {draft_id} does not exist", draft_id=draft_id)
    return draft


async def versions(session: AsyncSession, draft_id: int) -> list[DraftVersion]:
    await load(session, draft_id)
    rows = await session.scalars(
        select(DraftVersion).where(DraftVersion.draft_id == draft_id).order_by(DraftVersion.version)
    )
    return list(rows)


def _check(draft: Draft, expected_version: int, allowed: set[DraftStatus], doing: str) -> None:
    if draft.version != expected_version:
        raise StaleDraftError(
            f"Draft {draft.id} was changed by someone else (it is now at version "
            f"{draft.version}, you sent {expected_version}); reload it, check the new text and "
            "try again",
            draft_id=draft.id,
            current_version=draft.version,
            current_status=draft.status,
            current_body=draft.body,
            current_status_reason=draft.status_reason,
            current_updated_at=draft.updated_at.isoformat(),
        )
    if DraftStatus(draft.status) not in allowed:
        raise DraftStateError(
            f"draft {draft.id} is {draft.status}; it can be {doing} only when "
            f"{' or '.join(sorted(s.value for s in allowed))}",
            draft_id=draft.id,
            status=draft.status,
        )


def withdraw_approval(draft: Draft, reason: str) -> None:
    """Back to `edited`: the approval no longer applies and nothing of it stays on the draft."""
    draft.status = DraftStatus.EDITED.value
    draft.status_reason = reason
    draft.version += 1
    _clear_approval(draft)


def _clear_approval(draft: Draft) -> None:
    draft.approved_by_id = None
    draft.approved_at = None
    draft.approved_hash = None
    draft.approved_state = None
    draft.approved_last_message_id = None


async def _new_version(
    session: AsyncSession, draft: Draft, body: str, actor: Actor, status: DraftStatus
) -> None:
    _clear_approval(draft)
    draft.version += 1
    draft.body = body
    draft.status = status.value
    draft.status_reason = None
    draft.last_editor_id = actor.user_id
    draft.updated_at = utcnow()
    session.add(
        DraftVersion(
            draft_id=draft.id,
            version=draft.version,
            body=body,
            author=actor.name[:100],
            author_user_id=actor.user_id,
        )
    )


async def create(session: AsyncSession, actor: Actor, ticket_id: int, body: str) -> Draft:
    """An operator's own draft, written from scratch (status `edited`)."""
    await begin_write(session)
    if await session.get(Ticket, ticket_id) is None:
        raise NotFoundError(f"ticket {ticket_id} does not exist", ticket_id=ticket_id)
    draft = Draft(
        ticket_id=ticket_id,
        status=DraftStatus.EDITED.value,
        body=body,
        author=actor.name[:100],
        last_editor_id=actor.user_id,
        version=1,
    )
    session.add(draft)
    await session.flush()
    session.add(
        DraftVersion(
            draft_id=draft.id, version=1, body=body, author=actor.name[:100],
            author_user_id=actor.user_id,
        )
    )  # fmt: skip
    activity.record(
        session, actor, "draft.created", ticket_id=ticket_id, details={"draft_id": draft.id}
    )
    await session.commit()
    return draft


async def edit(
    session: AsyncSession, actor: Actor, draft_id: int, *, body: str, expected_version: int
) -> Draft:
    await begin_write(session)
    draft = await load(session, draft_id, for_update=True)
    _check(draft, expected_version, EDITABLE, "edited")
    await _new_version(session, draft, body, actor, DraftStatus.EDITED)
    activity.record(
        session,
        actor,
        "draft.edited",
        ticket_id=draft.ticket_id,
        details={"draft_id": draft.id, "version": draft.version},
    )
    await session.commit()
    return draft


async def approve(
    session: AsyncSession,
    actor: Actor,
    draft_id: int,
    *,
    expected_version: int,
    rules: ApprovalRules,
) -> Draft:
    """Approve the exact current text and queue it for sending, in one transaction."""
    await begin_write(session)
    draft = await load(session, draft_id, for_update=True)
    _check(draft, expected_version, APPROVABLE, "approved")
    if not draft.body.strip():
        raise InvalidInputError(f"draft {draft.id} is empty; write the reply first")
    if rules.require_second_approver and draft.last_editor_id == actor.user_id:
        raise PermissionDeniedError(
            "four-eyes rule: the last editor of a draft cannot approve it; ask a colleague",
            draft_id=draft.id,
        )
    ticket = await session.get_one(Ticket, draft.ticket_id)
    now = utcnow()
    draft.status = DraftStatus.APPROVED.value
    draft.status_reason = None
    draft.version += 1
    draft.approved_by_id = actor.user_id
    draft.approved_at = now
    draft.approved_hash = text_hash(draft.body)
    draft.approved_state = ticket.state
    draft.approved_last_message_id = await newest_customer_message(session, ticket.id)
    draft.edit_distance = (
        edit_distance(draft.proposed_body, draft.body) if draft.proposed_body else None
    )
    session.add(
        OutboxEntry(draft_id=draft.id, ticket_id=ticket.id, send_after=now + rules.send_delay)
    )
    activity.record(
        session,
        actor,
        "draft.approved",
        ticket_id=ticket.id,
        details={
            "draft_id": draft.id,
            "version": draft.version,
            "sha256": draft.approved_hash,
            "edit_distance": draft.edit_distance,
            "send_after": (now + rules.send_delay).isoformat(),
        },
    )
    await session.commit()
    return draft


async def newest_customer_message(session: AsyncSession, ticket_id: int) -> int | None:
    newest: int | None = await session.scalar(
        select(func.max(Message.id)).where(
            Message.ticket_id == ticket_id,
            Message.direction == Direction.INBOUND.value,
            Message.is_automated.is_(False),
        )
    )
    return newest


async def recall(session: AsyncSession, actor: Actor, draft_id: int) -> Draft:
    """Undo an approval while the reply waits (the undo window), before any send attempt: once
    one was made, the provider may have the message, and only the sender can tell."""
    await begin_write(session)
    draft = await load(session, draft_id, for_update=True)
    if draft.status not in (DraftStatus.APPROVED.value, DraftStatus.SENDING.value):
        raise DraftStateError(
            f"draft {draft.id} is {draft.status}; only an approved reply that has not been "
            "sent can be recalled",
            draft_id=draft.id,
        )
    cancelled = await session.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.draft_id == draft.id,
            OutboxEntry.status == "pending",
            OutboxEntry.attempts == 0,
        )
        .values(status="cancelled", updated_at=utcnow())
    )
    if not cancelled.rowcount:  # type: ignore[attr-defined]
        raise DraftStateError(
            f"draft {draft.id} is already being sent (a send was attempted); it cannot be recalled",
            draft_id=draft.id,
        )
    withdraw_approval(draft, "recalled")
    activity.record(
        session, actor, "draft.recalled", ticket_id=draft.ticket_id, details={"draft_id": draft.id}
    )
    await session.commit()
    return draft


async def discard(
    session: AsyncSession, actor: Actor, draft_id: int, *, expected_version: int | None
) -> Draft:
    await begin_write(session)
    draft = await load(session, draft_id, for_update=True)
    _check(draft, draft.version if expected_version is None else expected_version, DISCARDABLE,
           "discarded")  # fmt: skip
    draft.status = DraftStatus.DISCARDED.value
    draft.version += 1
    activity.record(
        session, actor, "draft.discarded", ticket_id=draft.ticket_id, details={"draft_id": draft.id}
    )
    await session.commit()
    return draft


async def retry(
    session: AsyncSession, actor: Actor, draft_id: int, *, rules: ApprovalRules
) -> Draft:
    """Send a failed reply again: the same approved text, through the same outbox entry, so
    the sender first looks for it in the mailbox (an earlier attempt may have gone out)."""
    await begin_write(session)
    draft = await load(session, draft_id, for_update=True)
    entry = await session.scalar(
        select(OutboxEntry)
        .where(OutboxEntry.draft_id == draft.id)
        .order_by(OutboxEntry.id.desc())
        .limit(1)
    )
    if draft.status != DraftStatus.FAILED.value or draft.approved_hash is None or entry is None:
        raise DraftStateError(
            f"draft {draft.id} is {draft.status}; only a failed send can be retried "
            "(edit it to change the text, which needs a new approval)",
            draft_id=draft.id,
        )
    draft.status = DraftStatus.APPROVED.value
    draft.status_reason = None
    draft.version += 1
    entry.status, entry.send_after, entry.updated_at = "pending", utcnow(), utcnow()
    activity.record(
        session, actor, "draft.retried", ticket_id=draft.ticket_id, details={"draft_id": draft.id}
    )
    await session.commit()
    return draft


async def save_and_approve(
    session: AsyncSession,
    actor: Actor,
    draft_id: int,
    *,
    body: str,
    expected_version: int,
    rules: ApprovalRules,
) -> Draft:
    """Approve what the operator sees in the editor: the text is saved first when it differs
    from the stored one (a new version, by this operator), then that version is approved.
    Under the four-eyes rule that approval is refused, and the saved text stays for a colleague.
    """
    draft = await load(session, draft_id)
    if draft.version == expected_version and body != draft.body:
        draft = await edit(session, actor, draft_id, body=body, expected_version=expected_version)
        expected_version = draft.version
    return await approve(session, actor, draft_id, expected_version=expected_version, rules=rules)
