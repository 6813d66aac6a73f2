"""Sending benchmark: approved replies through the outbox to the loopback Gmail server.

    .venv/bin/python -m bench.sending                      # 1,000 replies, SQLite and PostgreSQL
    .venv/bin/python -m bench.sending --n 200 --db sqlite --json /tmp/sending.json
    .venv/bin/python -m bench.sending --loop               # the worker's loop, pauses included

N customer questions, one thread each, are synced from a Gmail test server in its own process
into a fresh database; an operator writes a reply on every ticket and a colleague approves it
through the draft service, which queues each reply in the outbox in the approval's transaction.
Timed: draining the outbox with `sending.run_due`, the round the worker's sender loop runs (claim
under a lease, check the approval, compose, POST messages.send over HTTP, record the sent
message, move the ticket), rounds back to back: the sender's own pace. The worker's loop pauses
`COMMAGENT_SENDER_INTERVAL_SECONDS` after each round of at most 50; `--loop` drains with that
loop as configured instead. Each measurement runs in a fresh process; the RSS figures are that
process's (before the drain, and its peak during it, sampled every 20 ms).

Afterwards the Gmail server's sent messages must match the outbox one to one: each approved
reply sent exactly once, in its ticket's thread. A run that sent twice, lost one or held one is
reported as a failure (exit status 1), never as a figure. Issue 7 sets no target for sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.gmail_mailbox import (
    ROOT,
    SECRET,
    GmailProcess,
    SentMessage,
    connect_mailbox,
    gmail_settings,
)
from bench.memory import RssSampler, rss_mib
from bench.scratch_database import scratch_database
from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.mail_provider import ProviderOpener
from communication_agent.core.config import Settings, normalise_database_url
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.logging import configure_logging
from communication_agent.core.migrations import upgrade
from communication_agent.models import Draft, Message, OutboxEntry, Ticket
from communication_agent.models.enums import ActorType, Direction, Role, TicketState
from communication_agent.services import drafts, sending, sync, users
from communication_agent.services.actors import Actor

SessionMaker = async_sessionmaker[AsyncSession]
SENDER = "bench-sender"
PASSWORD = "bench-password-0123"  # noqa: S105 (throwaway users in a scratch database)
REPLY = (
    "Hello,\n\nThank you for writing to us about ticket {ticket}. We have looked into it: the "
    "charge you mention was a duplicate authorisation and has been released; it disappears "
    "from your statement within three working days. Nothing else is needed on your side.\n\n"
    "If anything still looks wrong after that, answer this message and we will pick it up "
    "again.\n\nKind regards,\nSupport"
)


@dataclass(frozen=True)
class Outbox:
    """What the database says was sent: entry and draft outcomes, and for each sent reply
    its Message-ID and the thread of the question it answers."""

    entries: dict[str, int]
    drafts: dict[str, int]
    max_attempts: int
    threads: dict[str, str]  # Message-ID -> the ticket's Gmail thread


# --- set-up: tickets with approved replies -------------------------------------------------


async def _operator(sessionmaker: SessionMaker, email: str) -> Actor:
    async with sessionmaker() as session:
        user = await users.create_user(
            session, Actor.system("bench"), email=email, password=PASSWORD, role=Role.OPERATOR
        )
    return Actor(type=ActorType.USER, name=email, user_id=user.id, role=Role.OPERATOR)


async def approve_replies(sessionmaker: SessionMaker) -> int:
    """One reply on every ticket, written by one operator and approved by another, through the
    draft service. No undo window, so every entry is due at once. Returns how many."""
    writer = await _operator(sessionmaker, "writer@staff.example.com")
    approver = await _operator(sessionmaker, "approver@staff.example.com")
    async with sessionmaker() as session:
        tickets = list(await session.scalars(select(Ticket.id).order_by(Ticket.id)))
    for ticket_id in tickets:
        async with sessionmaker() as session:
            draft = await drafts.create(session, writer, ticket_id, REPLY.format(ticket=ticket_id))
            await drafts.approve(
                session,
                approver,
                draft.id,
                expected_version=draft.version,
                rules=drafts.ApprovalRules(),
            )
    return len(tickets)


# --- the timed part ------------------------------------------------------------------------


async def drain(sessionmaker: SessionMaker, opener: ProviderOpener, settings: Settings) -> None:
    """`run_due` rounds back to back until a round finds nothing due."""
    while await sending.run_due(
        sessionmaker,
        opener,
        owner=SENDER,
        lease=timedelta(seconds=settings.sender_lease_seconds),
        state_after_send=TicketState(settings.state_after_send),
    ):
        pass


async def drain_with_loop(
    sessionmaker: SessionMaker, opener: ProviderOpener, settings: Settings
) -> None:
    """The worker's `run_loop` as configured, stopped once no entry is pending or sending."""
    stop = asyncio.Event()

    async def watch() -> None:
        while await _unsent(sessionmaker):  # noqa: ASYNC110 (the database has no event to await)
            await asyncio.sleep(0.05)
        stop.set()

    await asyncio.gather(
        sending.run_loop(
            sessionmaker,
            opener,
            owner=SENDER,
            interval=settings.sender_interval_seconds,
            lease=timedelta(seconds=settings.sender_lease_seconds),
            state_after_send=TicketState(settings.state_after_send),
            stop=stop,
        ),
        watch(),
    )


async def _unsent(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        waiting = (
            select(func.count())
            .select_from(OutboxEntry)
            .where(OutboxEntry.status.in_(("pending", "sending")))
        )
        return int(await session.scalar(waiting) or 0)


# --- afterwards: what was sent ---------------------------------------------------------------


async def read_outbox(sessionmaker: SessionMaker) -> Outbox:
    async with sessionmaker() as session:
        entries = await session.execute(
            select(OutboxEntry.status, func.count(), func.max(OutboxEntry.attempts)).group_by(
                OutboxEntry.status
            )
        )
        by_status = {status: (count, attempts) for status, count, attempts in entries}
        draft_statuses = await session.execute(
            select(Draft.status, func.count()).group_by(Draft.status)
        )
        threads = await session.execute(
            select(OutboxEntry.message_id_header, Message.provider_thread_id)
            .join(Message, Message.ticket_id == OutboxEntry.ticket_id)
            .where(OutboxEntry.status == "sent", Message.direction == Direction.INBOUND.value)
        )
        return Outbox(
            entries={status: count for status, (count, _) in by_status.items()},
            drafts={status: count for status, count in draft_statuses.tuples()},
            max_attempts=max((attempts for _, attempts in by_status.values()), default=0),
            threads={str(mid): str(thread) for mid, thread in threads.tuples()},
        )


def problems(n: int, outbox: Outbox, received: list[SentMessage]) -> list[str]:
    """Every way the run fell short of "each approved reply sent exactly once, in its
    thread"; empty when it did not."""
    found = []
    if outbox.entries != {"sent": n}:
        found.append(f"outbox entries {outbox.entries}, expected {n} sent")
    if outbox.drafts != {"sent": n}:
        found.append(f"drafts {outbox.drafts}, expected {n} sent")
    copies = Counter(m.message_id for m in received)
    if twice := [mid for mid, count in copies.items() if count > 1]:
        found.append(f"{len(twice)} replies reached Gmail more than once, e.g. {twice[0]}")
    replies = Counter(m.thread_id for m in received)
    if crowded := [thread for thread, count in replies.items() if count > 1]:
        found.append(f"{len(crowded)} threads got more than one reply, e.g. {crowded[0]}")
    if unknown := set(copies) - set(outbox.threads):
        found.append(f"{len(unknown)} messages reached Gmail that the outbox did not record")
    if missing := set(outbox.threads) - set(copies):
        found.append(f"{len(missing)} replies recorded as sent never reached Gmail")
    if misplaced := [m for m in received if outbox.threads.get(m.message_id, m.thread_id)
                     != m.thread_id]:  # fmt: skip
        found.append(f"{len(misplaced)} replies went to another thread than their question's")
    return found


# --- one measurement, in its own process ---------------------------------------------------


async def measure(
    n: int, db: str, gmail: dict[str, str], *, loop: bool
) -> tuple[dict[str, Any], Outbox]:
    async with scratch_database(db) as url:
        settings = gmail_settings(url, gmail)
        engine = create_engine(normalise_database_url(url))
        try:
            await upgrade(engine)
            sessionmaker = create_sessionmaker(engine)
            opener = provider_opener(settings, SECRET)
            mailbox_id = await connect_mailbox(sessionmaker, gmail)
            await sync.sync_mailbox(sessionmaker, mailbox_id, opener, owner="bench")
            approved = await approve_replies(sessionmaker)
            if approved != n:
                raise SystemExit(f"{db}: {n} questions made {approved} tickets, not {n}")
            before = rss_mib()
            async with RssSampler() as sampler:
                started = time.perf_counter()
                await (drain_with_loop if loop else drain)(sessionmaker, opener, settings)
                elapsed = time.perf_counter() - started
            outbox = await read_outbox(sessionmaker)
        finally:
            await engine.dispose()
    figures = {
        "db": db,
        "n": n,
        "drain": "run_loop" if loop else "run_due rounds",
        "seconds": round(elapsed, 2),
        "sends_per_second": round(n / elapsed, 1),
        "peak_rss_mib": round(sampler.peak),
        "before_drain_mib": round(before),
        "max_attempts": outbox.max_attempts,
    }
    return figures, outbox


def run_one(n: int, db: str, *, loop: bool) -> dict[str, Any]:
    with GmailProcess(n, mix="questions") as gmail:
        figures, outbox = asyncio.run(measure(n, db, gmail.ready, loop=loop))
        received = gmail.stop()
    return figures | {"gmail_received": len(received), "problems": problems(n, outbox, received)}


# --- the command -------------------------------------------------------------------------------


def _measure_in_child(n: int, db: str, loop: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.sending", "--single", "--n", str(n), "--db", db]
    out = subprocess.run(  # noqa: S603
        [*command, *(["--loop"] if loop else [])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{db}, {n} replies: the measuring process failed ({out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="approved replies (default 1,000)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--loop", action="store_true", help="drain with the worker's run_loop")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        configure_logging("INFO", "json")  # as the worker logs: one line a send, to stderr
        print(json.dumps(run_one(args.n, args.db, loop=args.loop)))
        return
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    line = "{:<9} {:>7} {:>8} {:>8} {:>9} {:>13} {:>15}"
    print(line.format("database", "replies", "seconds", "sends/s", "RSS peak", "before drain",
                      "Gmail received"))  # fmt: skip
    runs, failed = [], []
    for db in databases:
        r = _measure_in_child(args.n, db, args.loop)
        runs.append(r)
        peak, before = f"{r['peak_rss_mib']} MiB", f"{r['before_drain_mib']} MiB"
        row = (db, r["n"], r["seconds"], r["sends_per_second"], peak, before, r["gmail_received"])
        print(line.format(*row))
        failed += [f"{db}: {problem}" for problem in r["problems"]]
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    if failed:  # a fast run that sent twice or lost a reply is a failure, not a figure
        raise SystemExit("not sent exactly once:\n  " + "\n  ".join(failed))
    print(f"each approved reply reached Gmail exactly once, in its thread ({runs[0]['drain']})")


if __name__ == "__main__":
    main()
