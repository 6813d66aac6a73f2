"""A seeded, realistic ticket history for benchmarks, written straight into PostgreSQL with COPY.

Several mailboxes, 30,000 customers, tickets spread over a year (open ones mostly recent), states
NEW 10% / NEEDS_ACTION 25% / WAITING_OTHERS 15% / DONE 50%, priorities, categories, assignees
among five operators, one inbound message each (the labelled development set's mail, cycled)
and a triage result for 90% of them. People and mailboxes go through the services; the bulk
rows are COPY records with their ids given, so 100,000 tickets take seconds, not minutes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
from sqlalchemy.engine import URL

from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.migrations import upgrade
from communication_agent.models import Mailbox
from communication_agent.models.enums import Priority, Role, TicketState
from communication_agent.services import evaluation, users
from communication_agent.services.actors import Actor

PASSWORD = "bench-password-0123"  # noqa: S105 (a throwaway benchmark password)
ADMIN = "bench-admin@company.example"
OPERATORS = ("ana", "ben", "chloe", "dev", "emil")
MAILBOXES = ("support", "billing", "sales", "partners")
CONTACTS = 30_000
CHUNK = 5_000
TEXTS = Path(__file__).parent.parent / "tests" / "data" / "triage_dev.jsonl"
STATES = {
    TicketState.NEW: 10,
    TicketState.NEEDS_ACTION: 25,
    TicketState.WAITING_OTHERS: 15,
    TicketState.DONE: 50,
}
PRIORITIES = {Priority.LOW: 20, Priority.NORMAL: 55, Priority.HIGH: 18, Priority.URGENT: 7}
FIRST = ("Anna", "Marco", "Priya", "Tom", "Lena", "Kenji", "Sara", "Omar", "Julia", "Noah")
LAST = ("Meyer", "Rossi", "Raman", "Clarke", "Novak", "Sato", "Berg", "Haddad", "Costa", "Ward")

K = TypeVar("K")
Record = tuple[object, ...]
COLUMNS = {
    "contacts": ("id", "email", "name", "created_at", "updated_at"),
    "tickets": (
        "id", "mailbox_id", "contact_id", "assignee_id", "subject", "state", "priority",
        "category", "tags", "created_at", "updated_at", "state_changed_at",
        "last_customer_message_at", "first_response_at", "resolved_at", "version",
    ),
    "messages": (
        "id", "ticket_id", "mailbox_id", "direction", "provider_message_id", "provider_thread_id",
        "message_id_header", "in_reply_to", "references", "from_address", "from_name",
        "to_addresses", "cc_addresses", "subject", "sent_at", "received_at", "body_text",
        "body_html", "new_content_text", "is_automated", "quarantine_reason", "flags",
        "created_at",
    ),
    "triage_results": (
        "id", "ticket_id", "message_id", "category", "priority", "sentiment", "language",
        "summary", "needs_reply", "suggested_state", "confidence", "flags", "routing", "provider",
        "model", "created_at",
    ),
}  # fmt: skip


@dataclass
class _Rows:
    contacts: list[Record]
    tickets: list[Record]
    messages: list[Record]
    triage_results: list[Record]


def _weighted(rng: random.Random, weights: dict[K, int]) -> K:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _summary(body: str) -> str:
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    return " ".join(lines[1:4] if len(lines) > 1 else lines)[:200]


def _contacts(rng: random.Random, now: datetime) -> list[Record]:
    contacts: list[Record] = []
    for i in range(1, CONTACTS + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        joined = now - timedelta(days=400 * rng.random())
        address = f"{first.lower()}.{last.lower()}{i}@customer{i % 900}.example"
        contacts.append((i, address, f"{first} {last}", joined, joined))
    return contacts


def _rows(n: int, mailbox_ids: list[int], operator_ids: list[int], now: datetime) -> _Rows:
    rng = random.Random(6)  # noqa: S311 (seeded test data, not secrets)
    emails = evaluation.read_labelled(TEXTS)
    rows = _Rows(_contacts(rng, now), [], [], [])
    for i in range(1, n + 1):
        state = _weighted(rng, STATES)
        age = rng.random() ** (1 if state is TicketState.DONE else 3)
        created = now - timedelta(days=365 * age, seconds=rng.randrange(86400))
        updated = min(now, created + timedelta(hours=rng.expovariate(1 / 30)))
        assignee = None
        if rng.random() < (0.2 if state is TicketState.NEW else 0.85):
            assignee = rng.choice(operator_ids)
        email, priority = emails[i % len(emails)], _weighted(rng, PRIORITIES)
        contact = rows.contacts[rng.randrange(CONTACTS)]
        triaged = rng.random() < 0.9
        category = email.expected["category"] if triaged else None
        body = f"{email.body}\n\nOrder {100000 + i}"
        responded = None if state is TicketState.NEW else min(updated, created + timedelta(hours=2))
        resolved = updated if state is TicketState.DONE else None
        mailbox_id = rng.choice(mailbox_ids)
        rows.tickets.append(
            (i, mailbox_id, contact[0], assignee, email.subject, state.value, priority.value,
             category, "[]", created, updated, updated, created, responded, resolved, 1)
        )  # fmt: skip
        rows.messages.append(
            (i, i, mailbox_id, "inbound", f"bench-{i}", f"thread-{i}", f"<bench-{i}@example.org>",
             None, None, contact[1], contact[2], json.dumps([f"{MAILBOXES[0]}@company.example"]),
             "[]", email.subject, created, created, body, None, body, False, None, "{}", created)
        )  # fmt: skip
        if triaged:
            rows.triage_results.append(
                (len(rows.triage_results) + 1, i, i, category, priority.value, "neutral", "en",
                 _summary(email.body), True, None, 0.8, "[]", "queued for an operator",
                 "offline", "rules", created)
            )  # fmt: skip
    return rows


async def _people(url: URL) -> tuple[list[int], list[int]]:
    """Migrate, then create the admin who signs in, the operators and the mailboxes."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            actor = Actor.system("bench")
            await users.create_user(session, actor, email=ADMIN, password=PASSWORD, role=Role.ADMIN)
            operator_ids = []
            for name in OPERATORS:
                user = await users.create_user(
                    session,
                    actor,
                    email=f"{name}@company.example",
                    password=PASSWORD,
                    role=Role.OPERATOR,
                    display_name=name.title(),
                )
                operator_ids.append(user.id)
            boxes = [
                Mailbox(name=name, address=f"{name}@company.example", provider="local")
                for name in MAILBOXES
            ]
            session.add_all(boxes)
            await session.commit()
            return [box.id for box in boxes], operator_ids
    finally:
        await engine.dispose()


async def seed(url: URL, n: int) -> None:
    """Migrate an empty database and fill it with `n` tickets, then VACUUM ANALYZE it.

    VACUUM as well as ANALYZE: autovacuum would set the visibility map of a table this size
    within a minute, and index-only scans depend on it (the test server runs without autovacuum).
    """
    mailbox_ids, operator_ids = await _people(url)
    rows = _rows(n, mailbox_ids, operator_ids, datetime.now(UTC))
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        for table, columns in COLUMNS.items():
            records: list[Record] = getattr(rows, table)
            for start in range(0, len(records), CHUNK):
                chunk = records[start : start + CHUNK]
                await conn.copy_records_to_table(table, records=chunk, columns=columns)
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {max(len(records), 1)})"
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def issue_token(url: URL) -> str:
    """A fresh API token for the admin (the plaintext, as `commagent tokens create` prints)."""
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            issued = await users.issue_token(session, Actor.system("bench"), email=ADMIN)
            return issued.plaintext
    finally:
        await engine.dispose()
