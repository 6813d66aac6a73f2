"""Ticket references in subjects.

Which ticket an incoming message belongs to is decided by these rules, in order of trust (applied
per batch in `services/ingestion.py`, `_BatchIndex.find_ticket`):
1. the provider's thread id (Gmail `threadId`), when another message of the mailbox has it;
2. `In-Reply-To` and `References` against Message-IDs we already hold in the mailbox;
3. a ticket reference in the subject, `[#123]`, for a ticket of the same mailbox, and only
   from that ticket's customer (or the mailbox itself): anyone can type a token.
No match means a new conversation.
"""

from __future__ import annotations

import re

TICKET_REFERENCE = re.compile(r"\[#(\d{1,9})\]")


def ticket_reference(ticket_id: int) -> str:
    """The token we put in subjects so replies find their ticket even without headers."""
    return f"[#{ticket_id}]"
