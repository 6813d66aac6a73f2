"""Mailboxes: listing with sync health, creating local-folder ones, and their quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import begin_write
from communication_agent.models import Mailbox, QuarantinedMessage, SyncError
from communication_agent.models.base import utcnow
from communication_agent.models.enums import MailProvider, TokenState
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.credentials import encrypt_credentials
from communication_agent.services.errors import InvalidInputError, NotFoundError
from communication_agent.services.pagination import Page, newest_first_page
from communication_agent.services.users import normalise_email


@dataclass
class MailboxHealth:
    mailbox: Mailbox
    open_sync_errors: int
    quarantined: int

    @property
    def syncing(self) -> bool:
        expires = self.mailbox.lease_expires_at
        return self.mailbox.lease_owner is not None and expires is not None and expires > utcnow()


async def all_mailboxes(session: AsyncSession) -> Sequence[Mailbox]:
    """Every mailbox in creation order, without the health counts (for filter menus)."""
    return (await session.scalars(select(Mailbox).order_by(Mailbox.id))).all()


async def list_mailboxes(
    session: AsyncSession, mailbox_id: int | None = None
) -> list[MailboxHealth]:
    query = select(Mailbox).order_by(Mailbox.id)
    if mailbox_id is not None:
        query = query.where(Mailbox.id == mailbox_id)
    mailboxes = (await session.scalars(query)).all()
    errors = dict(
        (
            await session.execute(
                select(SyncError.mailbox_id, func.count())
                .where(SyncError.resolved_at.is_(None))
                .group_by(SyncError.mailbox_id)
            )
        ).all()
    )
    quarantined = dict(
        (
            await session.execute(
                select(QuarantinedMessage.mailbox_id, func.count()).group_by(
                    QuarantinedMessage.mailbox_id
                )
            )
        ).all()
    )
    return [MailboxHealth(m, errors.get(m.id, 0), quarantined.get(m.id, 0)) for m in mailboxes]


async def get_mailbox(session: AsyncSession, mailbox_id: int) -> Mailbox:
    mailbox = await session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise NotFoundError(f"Mailbox {mailbox_id} does not exist.", mailbox_id=mailbox_id)
    return mailbox


async def find_mailbox(session: AsyncSession, name: str) -> Mailbox:
    mailbox = await session.scalar(select(Mailbox).where(Mailbox.name == name))
    if mailbox is None:
        known = ", ".join(
            (await session.scalars(select(Mailbox.name).order_by(Mailbox.name))).all()
        )
        raise NotFoundError(
            f"No mailbox named {name!r}"
            + (f"; known: {known}." if known else "; there are none yet."),
            name=name,
        )
    return mailbox


async def active_mailbox_ids(session: AsyncSession) -> Sequence[int]:
    return (
        await session.scalars(select(Mailbox.id).where(Mailbox.is_active).order_by(Mailbox.id))
    ).all()


async def ensure_local_mailbox(
    session: AsyncSession, actor: Actor, *, name: str, path: Path, address: str | None
) -> Mailbox:
    """The local-folder mailbox `name`, created for `path` if it does not exist yet."""
    await begin_write(session)
    mailbox = await session.scalar(select(Mailbox).where(Mailbox.name == name))
    if mailbox is not None:
        if mailbox.provider != MailProvider.LOCAL.value:
            raise InvalidInputError(
                f"Mailbox {name!r} is a {mailbox.provider} mailbox, not a local folder."
            )
        if mailbox.config.get("path") != str(path):
            mailbox.config = {**mailbox.config, "path": str(path)}
            await session.commit()
        return mailbox
    if not address:
        raise InvalidInputError(
            f"Mailbox {name!r} does not exist yet; give its own address with --address so that "
            "mail it sent can be told apart from customer mail."
        )
    mailbox = Mailbox(
        name=name,
        address=normalise_email(address),
        provider=MailProvider.LOCAL.value,
        config={"path": str(path)},
    )
    session.add(mailbox)
    await session.flush()
    activity.record(
        session,
        actor,
        "mailbox.created",
        details={"mailbox_id": mailbox.id, "provider": "local", "name": name},
    )
    await session.commit()
    return mailbox


async def list_quarantine(
    session: AsyncSession, mailbox_id: int, *, cursor: str | None, limit: int
) -> Page[QuarantinedMessage]:
    await get_mailbox(session, mailbox_id)
    query = select(QuarantinedMessage).where(QuarantinedMessage.mailbox_id == mailbox_id)
    return await newest_first_page(
        session, query, QuarantinedMessage.id, cursor=cursor, limit=limit
    )


async def connect_gmail(
    session: AsyncSession, actor: Actor, *, address: str, refresh_token: str, secret_key: str
) -> Mailbox:
    """Create the Gmail mailbox for `address`, or reconnect it: new grant, health reset."""
    await begin_write(session)
    address = normalise_email(address)
    blob = encrypt_credentials(secret_key, {"refresh_token": refresh_token})
    mailbox = await session.scalar(
        select(Mailbox).where(
            Mailbox.provider == MailProvider.GMAIL.value, Mailbox.address == address
        )
    )
    action = "mailbox.reconnected"
    if mailbox is None:
        mailbox = Mailbox(name=address, address=address, provider=MailProvider.GMAIL.value)
        session.add(mailbox)
        action = "mailbox.created"
    mailbox.credentials = blob
    mailbox.token_state = TokenState.OK.value
    mailbox.token_error = None
    mailbox.consecutive_errors = 0
    mailbox.is_active = True
    await session.flush()
    activity.record(
        session,
        actor,
        action,
        details={"mailbox_id": mailbox.id, "provider": "gmail", "address": address},
    )
    await session.commit()
    return mailbox
