"""`commagent demo`, the real console script: the system `make run` starts with."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings
from communication_agent.models import (
    ActivityEntry,
    ApiToken,
    Attachment,
    Draft,
    Mailbox,
    Message,
    ModelCall,
    ReasoningTask,
    Ticket,
    TriageResult,
    User,
)
from communication_agent.models.enums import ActorType, Direction, DraftStatus, Role, TicketState
from communication_agent.services import drafts, sending
from communication_agent.services.actors import Actor
from communication_agent.services.demo import PACKAGED_MAIL
from tests.conftest import TEST_SECRET_KEY
from tests.live_server import cli_environment, run_cli

SessionMaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "cli-data"


@pytest.fixture
def env(settings: Settings, data_dir: Path) -> dict[str, str]:
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(data_dir),
    )


def _demo(env: dict[str, str]) -> str:
    result = run_cli("demo", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _demo_mailbox(session: AsyncSession) -> Mailbox:
    return (await session.scalars(select(Mailbox).where(Mailbox.name == "demo"))).one()


async def _rows(session: AsyncSession) -> dict[str, int]:
    """Row counts of what the demo creates; the activity log without its sync records (every
    run syncs the folder, and the log says so)."""
    tables = (Message, Ticket, TriageResult, Draft, User, ApiToken, ModelCall)
    counts = {t.__name__: await session.scalar(select(func.count()).select_from(t)) for t in tables}
    counts["ActivityEntry"] = await session.scalar(
        select(func.count()).where(ActivityEntry.action != "mailbox.synced")
    )
    return {name: n or 0 for name, n in counts.items()}


async def test_demo_prepares_a_triaged_mailbox_once_and_sends_into_its_folder(
    env: dict[str, str], sessionmaker: SessionMaker, settings: Settings, data_dir: Path
) -> None:
    out = _demo(env)
    for login in ("admin@example.com", "operator@example.com", "viewer@example.com"):
        assert f"{login} / commagent-demo" in out
    sent_dir = (data_dir / "demo-mail" / "sent").resolve()
    assert str(sent_dir) in out
    await _check_demo_mailbox(sessionmaker, data_dir)

    packaged = sorted(p.name for p in (PACKAGED_MAIL / "sent").iterdir())
    await _approve_and_send_one(sessionmaker, settings)
    [written] = {p.name for p in sent_dir.iterdir()} - set(packaged)
    assert b"In-Reply-To:" in (sent_dir / written).read_bytes()
    assert sorted(p.name for p in (PACKAGED_MAIL / "sent").iterdir()) == packaged

    async with sessionmaker() as session:
        before = await _rows(session)
    again = _demo(env)  # nothing new; the reply in sent/ is matched to the one recorded
    async with sessionmaker() as session:
        assert await _rows(session) == before
    token = next(line.split()[-1] for line in out.splitlines() if line.startswith("API token"))
    assert f"API token: {token}" in again


async def _check_demo_mailbox(sessionmaker: SessionMaker, data_dir: Path) -> None:
    """Enough varied mail, threads, languages; every ticket triaged, drafts where needed."""
    async with sessionmaker() as session:
        mailbox = await _demo_mailbox(session)
        assert mailbox.config["path"] == str((data_dir / "demo-mail").resolve())
        tickets = (
            await session.scalars(select(Ticket).where(Ticket.mailbox_id == mailbox.id))
        ).all()
        messages = (
            await session.scalars(select(Message).where(Message.mailbox_id == mailbox.id))
        ).all()
        triage = (await session.scalars(select(TriageResult).order_by(TriageResult.id))).all()
        proposed = set(
            await session.scalars(
                select(Draft.ticket_id).where(Draft.status == DraftStatus.PROPOSED.value)
            )
        )
        roles = set(await session.scalars(select(User.role)))
        attachments = await session.scalar(select(func.count()).select_from(Attachment))
        pending = await session.scalar(
            select(func.count()).where(ReasoningTask.status.in_(("pending", "running")))
        )

    assert len(messages) >= 40
    per_ticket = {t.id: [m for m in messages if m.ticket_id == t.id] for t in tickets}
    assert sum(len(thread) > 1 for thread in per_ticket.values()) >= 5
    assert any(m.direction == Direction.OUTBOUND.value for m in messages)  # mail in sent/
    assert any(m.is_automated for m in messages)  # an out-of-office, a newsletter
    assert any(m.body_html and m.body_text and "<" not in m.body_text for m in messages)
    assert attachments
    assert len({t.language for t in triage}) >= 5
    assert any(t.flags for t in triage)  # the message that talks to the model is flagged
    assert roles >= {Role.ADMIN.value, Role.OPERATOR.value, Role.VIEWER.value}
    assert pending == 0

    latest_triage = {t.ticket_id: t for t in triage}  # ordered by id: the newest wins
    for ticket in tickets:
        human = [
            m for m in per_ticket[ticket.id] if m.direction == "inbound" and not m.is_automated
        ]
        if not human:  # automated mail is filed, never triaged
            assert ticket.state == TicketState.DONE.value
            continue
        result = latest_triage[ticket.id]
        assert result.message_id == max(m.id for m in human), ticket.subject
        asked = max(human, key=lambda m: m.id)
        answered = any(
            m.direction == Direction.OUTBOUND.value and m.received_at > asked.received_at
            for m in per_ticket[ticket.id]
        )
        if answered:  # our reply in sent/ came after the question: nothing to draft
            assert ticket.id not in proposed, ticket.subject
        elif result.needs_reply and ticket.state != TicketState.DONE.value:
            assert ticket.id in proposed, ticket.subject
    assert len(proposed) >= 20
    assert sum(t.state == TicketState.DONE.value for t in tickets) >= 3  # thanks, spam


async def _approve_and_send_one(sessionmaker: SessionMaker, settings: Settings) -> None:
    """What an operator does in the console, then the sender `serve` runs."""
    async with sessionmaker() as session:
        operator = (
            await session.scalars(select(User).where(User.email == "operator@example.com"))
        ).one()
        draft = (
            await session.scalars(
                select(Draft).where(Draft.status == DraftStatus.PROPOSED.value).order_by(Draft.id)
            )
        ).first()
        assert draft is not None
        actor = Actor(ActorType.USER, operator.email, user_id=operator.id, role=Role.OPERATOR)
        await drafts.approve(
            session, actor, draft.id, expected_version=draft.version, rules=drafts.ApprovalRules()
        )
    sent = await sending.run_due(
        sessionmaker,
        provider_opener(settings, TEST_SECRET_KEY),
        owner="test-sender",
        lease=timedelta(minutes=1),
        state_after_send=TicketState.WAITING_OTHERS,
    )
    assert sent == 1
    async with sessionmaker() as session:
        assert (await session.get_one(Draft, draft.id)).status == DraftStatus.SENT.value
