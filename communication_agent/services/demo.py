"""The demo: sample support mail in a local-folder mailbox, triaged and drafted, and a login per
role, so that `make run` starts on a working system rather than an empty board.

Every step is idempotent, because `make run` runs it at every start: the mail is copied once,
users are created once, a second sync finds only duplicates, and the reasoning queue is empty.
The mail itself is the ordinary path: the packaged `.eml` files are copied into the data
directory (the mailbox's folder; replies approved in the demo are written to its `sent/`), synced
by `sync.sync_mailbox`, and triaged and drafted by the same queue `serve` works through.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy import Select, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.models import Draft, Mailbox, Message, Ticket, TriageResult, User
from communication_agent.models.enums import DraftStatus, Role
from communication_agent.services import mailboxes, reasoning_tasks, users
from communication_agent.services.actors import Actor
from communication_agent.services.assistant import AssistantConfig

PACKAGED_MAIL = Path(__file__).resolve().parent.parent / "data" / "demo_mail"
MAILBOX_NAME = "demo"
MAILBOX_ADDRESS = "support@northwind.example.com"
DEMO_ACTOR = Actor.system("demo")
SessionMaker = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: Role
    display_name: str


def demo_logins(admin_email: str) -> list[DemoLogin]:
    """One login per role, so that the console's permissions can be tried side by side."""
    return [
        DemoLogin(admin_email, Role.ADMIN, "Demo Admin"),
        DemoLogin("operator@example.com", Role.OPERATOR, "Demo Operator"),
        DemoLogin("viewer@example.com", Role.VIEWER, "Demo Viewer"),
    ]


async def ensure_logins(
    session: AsyncSession, actor: Actor, logins: Sequence[DemoLogin], *, password: str
) -> list[User]:
    """The demo users, created with `password` the first time (existing ones are left alone)."""
    found = []
    for login in logins:
        user, _created = await users.ensure_user(
            session,
            actor,
            email=login.email,
            password=password,
            role=login.role,
            display_name=login.display_name,
        )
        found.append(user)
    return found


def install_mail(target: Path, source: Path = PACKAGED_MAIL) -> bool:
    """Copy the packaged demo mail to `target` unless it is there (True when copied now).

    The copy is the mailbox's folder, so replies sent in the demo land in its `sent/` and the
    package is never written to. Each file's modification time is set to its Date header: the
    local folder reports it as the arrival time, which dates the messages and makes the first
    sync store a conversation in the order it was written. The copy is assembled beside the
    target and renamed into place, so an interrupted first run leaves no half-filled folder."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    for file in staging.rglob("*.eml"):
        written = _date_header(file)
        if written is not None:
            os.utime(file, (written.timestamp(), written.timestamp()))
    staging.rename(target)
    return True


def _date_header(file: Path) -> datetime | None:
    with file.open("rb") as stream:
        value = BytesHeaderParser().parse(stream).get("Date")
    try:
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None


async def ensure_mailbox(session: AsyncSession, actor: Actor, folder: Path) -> Mailbox:
    """The local-folder mailbox `demo` reading `folder`."""
    return await mailboxes.ensure_local_mailbox(
        session, actor, name=MAILBOX_NAME, path=folder, address=MAILBOX_ADDRESS
    )


async def reason_until_idle(
    sessionmaker: SessionMaker,
    model: ReasoningModel,
    config: AssistantConfig,
    *,
    owner: str,
    lease: timedelta,
) -> int:
    """Triage and draft until no task is due; returns how many tasks were done. A task that
    fails is rescheduled by the queue (not due now), so this always ends."""
    total = 0
    while done := await reasoning_tasks.run_due(
        sessionmaker, model, config, owner=owner, lease=lease
    ):
        total += done
    return total


@dataclass(frozen=True)
class DemoSummary:
    messages: int
    tickets: int
    threads: int  # tickets with more than one message
    triaged: int  # tickets with at least one triage result
    proposed_drafts: int
    languages: list[str]  # as triage detected them, most frequent first


async def summarise(session: AsyncSession, mailbox_id: int) -> DemoSummary:
    """What the demo mailbox holds, for the start-up banner."""
    tickets = select(Ticket.id).where(Ticket.mailbox_id == mailbox_id).scalar_subquery()
    per_ticket = (
        select(Message.ticket_id, func.count().label("n"))
        .where(Message.mailbox_id == mailbox_id)
        .group_by(Message.ticket_id)
        .subquery()
    )
    languages = await session.execute(
        select(TriageResult.language, func.count(distinct(TriageResult.ticket_id)).label("n"))
        .where(TriageResult.ticket_id.in_(tickets))
        .group_by(TriageResult.language)
        .order_by(func.count(distinct(TriageResult.ticket_id)).desc(), TriageResult.language)
    )
    return DemoSummary(
        messages=await _count(
            session, select(func.count()).where(Message.mailbox_id == mailbox_id)
        ),
        tickets=await _count(session, select(func.count()).where(Ticket.mailbox_id == mailbox_id)),
        threads=await _count(
            session, select(func.count()).select_from(per_ticket).where(per_ticket.c.n > 1)
        ),
        triaged=await _count(
            session,
            select(func.count(distinct(TriageResult.ticket_id))).where(
                TriageResult.ticket_id.in_(tickets)
            ),
        ),
        proposed_drafts=await _count(
            session,
            select(func.count()).where(
                Draft.ticket_id.in_(tickets), Draft.status == DraftStatus.PROPOSED.value
            ),
        ),
        languages=[language for language, _n in languages.all()],
    )


async def _count(session: AsyncSession, query: Select[int]) -> int:
    return await session.scalar(query) or 0
