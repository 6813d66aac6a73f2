"""Which ticket an incoming message belongs to.

The rules, in order of trust:
1. the provider's thread id (Gmail `threadId`), when another message of the mailbox has it;
2. `In-Reply-To` and `References` against Message-IDs we already hold in the mailbox;
3. a ticket reference in the subject, `[#123]`, for a ticket of the same mailbox.
No match means a new conversation.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Message, Ticket
from communication_agent.services.mail_parsing import ParsedMessage

TICKET_REFERENCE = re.compile(r"\[#(\d{1,9})\]")


def ticket_reference(ticket_id: int) -> str:
    """The token we put in subjects so replies find their ticket even without headers."""
    return f"[#{ticket_id}]"


async def find_ticket(
    session: AsyncSession, mailbox_id: int, parsed: ParsedMessage, provider_thread_id: str | None
) -> Ticket | None:
    if provider_thread_id:
        ticket_id = await session.scalar(
            select(Message.ticket_id)
            .where(
                Message.mailbox_id == mailbox_id, Message.provider_thread_id == provider_thread_id
            )
            .limit(1)
        )
        if ticket_id is not None:
            return await session.get(Ticket, ticket_id)
    ids = [i for i in [parsed.in_reply_to, *reversed(parsed.references)] if i]
    if ids:
        ticket_id = await session.scalar(
            select(Message.ticket_id)
            .where(Message.mailbox_id == mailbox_id, Message.message_id_header.in_(ids))
            .limit(1)
        )
        if ticket_id is not None:
            return await session.get(Ticket, ticket_id)
    for match in TICKET_REFERENCE.finditer(parsed.subject):
        ticket = await session.get(Ticket, int(match.group(1)))
        if ticket is not None and ticket.mailbox_id == mailbox_id:
            return ticket
    return None
