"""Test data written through the ORM (what ingestion will create), plus users and tokens made
through the real services, so authentication in tests is the production code path."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import Contact, Mailbox, Message, Ticket, User
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Direction, MailProvider, Priority, Role, TicketState
from communication_agent.services import users
from communication_agent.services.actors import Actor

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)
TEST_ACTOR = Actor.system("tests")


@dataclass
class Principal:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Factory:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def principal(self, role: Role = Role.OPERATOR, email: str | None = None) -> Principal:
        email = email or f"{role.value}{next(_seq)}@staff.example.com"
        async with self.sessionmaker() as session:
            user = await users.create_user(
                session, TEST_ACTOR, email=email, password=PASSWORD, role=role
            )
            issued = await users.issue_token(session, TEST_ACTOR, email=email)
        return Principal(user=user, token=issued.plaintext)

    async def mailbox(self, name: str | None = None) -> Mailbox:
        n = next(_seq)
        async with self.sessionmaker() as session:
            mailbox = Mailbox(
                name=name or f"support-{n}",
                address=f"support{n}@company.example",
                provider=MailProvider.LOCAL.value,
            )
            session.add(mailbox)
            await session.commit()
            return mailbox

    async def ticket(
        self,
        *,
        mailbox: Mailbox | None = None,
        subject: str | None = None,
        state: TicketState = TicketState.NEW,
        priority: Priority = Priority.NORMAL,
        category: str | None = None,
        customer_email: str | None = None,
        customer_name: str = "Casey Customer",
        body: str = "Hello, I need help with my account.",
        created_at: datetime | None = None,
        assignee_id: int | None = None,
    ) -> Ticket:
        mailbox = mailbox or await self.mailbox()
        n = next(_seq)
        now = created_at or utcnow()
        async with self.sessionmaker() as session:
            contact = Contact(
                email=customer_email or f"customer{n}@example.org", name=customer_name
            )
            session.add(contact)
            await session.flush()
            ticket = Ticket(
                mailbox_id=mailbox.id,
                contact_id=contact.id,
                subject=subject or f"Help request {n}",
                state=state.value,
                priority=priority.value,
                category=category,
                created_at=now,
                updated_at=now,
                state_changed_at=now,
                last_customer_message_at=now,
                assignee_id=assignee_id,
                resolved_at=now if state is TicketState.DONE else None,
            )
            session.add(ticket)
            await session.flush()
            session.add(
                Message(
                    ticket_id=ticket.id,
                    mailbox_id=mailbox.id,
                    direction=Direction.INBOUND.value,
                    provider_message_id=f"prov-{n}",
                    message_id_header=f"<msg-{n}@example.org>",
                    from_address=contact.email,
                    from_name=customer_name,
                    to_addresses=[mailbox.address],
                    subject=ticket.subject,
                    sent_at=now - timedelta(seconds=5),
                    received_at=now,
                    body_text=body,
                    new_content_text=body,
                )
            )
            await session.commit()
            return ticket
