"""The production layout on PostgreSQL, run for real: three `commagent worker` and two
`commagent serve` processes share two Gmail mailboxes of 5,000 messages in all, triage and draft
them with the offline model, and send 200 replies approved through both API processes; one worker
is killed with SIGKILL while it holds a mailbox mid-sync.

Afterwards: every message at the provider is on exactly one ticket (by provider id and by
Message-ID, one ticket per thread), every approved reply left exactly once, the dead worker's
claims were taken over once their leases ran out, and no work was done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import itertools
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.mail_mix import messages
from communication_agent.core.config import Settings
from communication_agent.models import (
    ActivityEntry,
    Draft,
    Mailbox,
    Message,
    ModelCall,
    OutboxEntry,
    QuarantinedMessage,
    ReasoningTask,
    SyncError,
    TriageResult,
)
from communication_agent.models.enums import Direction, Role
from communication_agent.services import mailboxes
from communication_agent.services.actors import Actor
from tests.conftest import TEST_SECRET_KEY
from tests.factories import Factory, Principal
from tests.gmail_accounts import GmailAccounts
from tests.gmail_server import Fault, sent_messages
from tests.live_server import COMMAGENT, cli_environment, live_server

SessionMaker = async_sessionmaker[AsyncSession]
MESSAGES = 5_000
APPROVALS = 200
WORKERS = 3
API_PROCESSES = 2
ADDRESSES = ("support@company.example", "billing@company.example")
LEASE_SECONDS = 5  # the shortest the settings allow for model work and sending
PAGE_SIZE = 100  # messages a sync page holds: the work a sync cut short may have to redo
DEADLINE_SECONDS = 300
HEADERS = BytesParser(policy=email.policy.default)


@dataclass
class Mail:
    """What the provider holds: each account's threads, with how many messages each has."""

    thread_sizes: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class Claims:
    """What the killed worker held when it died, and until when."""

    owner: str
    mailboxes: dict[int, datetime] = field(default_factory=dict)
    tasks: dict[int, datetime] = field(default_factory=dict)
    outbox: dict[int, datetime] = field(default_factory=dict)


@dataclass
class Run:
    """The test's view of the running system."""

    sessionmaker: SessionMaker
    gmail: GmailAccounts
    mail: Mail
    mailbox_address: dict[int, str]
    operator: Principal
    api_urls: list[str]
    workers: list[subprocess.Popen[bytes]]
    approved: set[int] = field(default_factory=set)
    approvals_by_api: Counter[str] = field(default_factory=Counter)
    victim: Claims | None = None
    timeline: dict[str, float] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)


def _fill(gmail: GmailAccounts) -> Mail:
    """The benchmark's realistic mix, new threads dealt to the accounts in turn."""
    mail, account_of = Mail(), dict[str, str]()
    for raw, thread_id, labels in messages(MESSAGES):
        address = account_of.setdefault(thread_id, ADDRESSES[len(account_of) % len(ADDRESSES)])
        gmail.accounts[address].add_message(raw, thread_id=thread_id, labels=labels)
        mail.thread_sizes[address, thread_id] += 1
    for account in gmail.accounts.values():
        # Slow after Gmail accepted a reply: a killed sender leaves one accepted, unrecorded.
        account.inject(Fault("messages.send.accepted", delay=0.02, times=1_000_000))
    return mail


async def _connect(sessionmaker: SessionMaker, gmail: GmailAccounts) -> dict[int, str]:
    connected = {}
    for address, account in gmail.accounts.items():
        async with sessionmaker() as session:
            mailbox = await mailboxes.connect_gmail(
                session,
                Actor.system("tests"),
                address=address,
                refresh_token=account.issue_refresh_token(),
                secret_key=TEST_SECRET_KEY,
            )
        connected[mailbox.id] = address
    return connected


def _environment(settings: Settings, gmail: GmailAccounts, data_dir: Path) -> dict[str, str]:
    """One environment for every process, as in production; short leases and polls."""
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(data_dir),
        **gmail.client_settings(),
        gmail_page_size=str(PAGE_SIZE),
        sync_lease_seconds=str(LEASE_SECONDS),
        reasoning_lease_seconds=str(LEASE_SECONDS),
        sender_lease_seconds=str(LEASE_SECONDS),
        reasoning_interval_seconds="0.2",
        sender_interval_seconds="0.2",
        db_pool_size="4",
    )


@contextlib.contextmanager
def _workers(env: dict[str, str], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`commagent worker` processes, logging to files (a full pipe would stall them)."""
    processes = []
    with contextlib.ExitStack() as stack:
        for n in range(WORKERS):
            log = stack.enter_context((logs / f"worker-{n}.log").open("wb"))
            processes.append(
                subprocess.Popen(
                    [COMMAGENT, "worker", "--interval", "0.5"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            yield processes
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _owner(process: subprocess.Popen[bytes]) -> str:
    return f"worker:{socket.gethostname()}:{process.pid}"


@pytest.mark.postgres_only
async def test_workers_and_api_processes_share_the_work_and_survive_a_killed_worker(
    settings: Settings, sessionmaker: SessionMaker, factory: Factory, tmp_path: Path
) -> None:
    with GmailAccounts(ADDRESSES) as gmail:
        mail = _fill(gmail)
        mailbox_address = await _connect(sessionmaker, gmail)
        operator = await factory.principal(Role.OPERATOR)
        env = _environment(settings, gmail, tmp_path / "data")
        with contextlib.ExitStack() as stack:
            started = time.monotonic()
            workers = stack.enter_context(_workers(env, tmp_path))
            api_urls = [
                stack.enter_context(live_server(env, tmp_path / f"serve-{n}.log"))
                for n in range(API_PROCESSES)
            ]
            run = Run(sessionmaker, gmail, mail, mailbox_address, operator, api_urls, workers)
            run.timeline["started"] = started
            await _drive(run, tmp_path)
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            codes = [w.wait(timeout=30) for w in workers]
        assert sorted(codes) == [-signal.SIGKILL, 0, 0], _tails(tmp_path)
        await _check_every_message_on_one_ticket(run)
        await _check_every_approved_reply_sent_once(run)
        await _check_the_dead_workers_claims_were_taken_over(run)
        await _check_no_work_done_twice(run)
    _report(run)


async def _drive(run: Run, logs: Path) -> None:
    """Approve, kill a worker midway through the sync, and wait until everything settled."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        killed = run.victim.owner if run.victim else None
        if any(w.poll() is not None and _owner(w) != killed for w in run.workers):
            pytest.fail(f"a worker exited on its own:\n{_tails(logs)}")
        await _fail_on_sync_errors(run)
        stored = await _count(run.sessionmaker, Message)
        if stored >= MESSAGES and "synced" not in run.timeline:
            run.timeline["synced"] = time.monotonic()
        if run.victim is None and stored >= MESSAGES // 2:
            run.victim = await _kill_a_syncing_worker(run)
        await _approve_complete_tickets(run)
        if await _settled(run):
            run.timeline["settled"] = time.monotonic()
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"not settled after {DEADLINE_SECONDS}s: {await _progress(run)}\n{_tails(logs)}")


async def _fail_on_sync_errors(run: Run) -> None:
    """A mailbox whose syncs keep failing will not settle: say why now."""
    async with run.sessionmaker() as session:
        failing = (
            await session.execute(
                select(Mailbox.address, Mailbox.last_error).where(Mailbox.consecutive_errors >= 3)
            )
        ).all()
    if failing:
        pytest.fail(f"syncs keep failing: {failing}")


async def _kill_a_syncing_worker(run: Run) -> Claims | None:
    """SIGKILL a worker holding a mailbox lease (any claim, once the first sync is over);
    return what it held. None when no worker holds anything at this moment."""
    async with run.sessionmaker() as session:
        holders = set(
            await session.scalars(
                select(Mailbox.lease_owner).where(Mailbox.lease_owner.is_not(None))
            )
        )
        if await _count(run.sessionmaker, Message) >= MESSAGES:
            holders |= set(await session.scalars(select(ReasoningTask.lease_owner)))
            holders |= set(await session.scalars(select(OutboxEntry.lease_owner)))
    for worker in run.workers:
        if any(h and (h == _owner(worker) or h.startswith(_owner(worker) + "/")) for h in holders):
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            run.timeline["killed"] = time.monotonic()
            return await _claims_of(run.sessionmaker, _owner(worker))
    return None


async def _claims_of(sessionmaker: SessionMaker, owner: str) -> Claims:
    claims = Claims(owner)
    async with sessionmaker() as session:
        for mailbox in await session.scalars(
            select(Mailbox).where(Mailbox.lease_owner.startswith(owner + "/"))
        ):
            assert mailbox.lease_expires_at is not None
            claims.mailboxes[mailbox.id] = mailbox.lease_expires_at
        for task in await session.scalars(
            select(ReasoningTask).where(
                ReasoningTask.lease_owner == owner, ReasoningTask.status == "running"
            )
        ):
            assert task.lease_expires_at is not None
            claims.tasks[task.id] = task.lease_expires_at
        for entry in await session.scalars(
            select(OutboxEntry).where(
                OutboxEntry.lease_owner == owner, OutboxEntry.status == "sending"
            )
        ):
            assert entry.lease_expires_at is not None
            claims.outbox[entry.id] = entry.lease_expires_at
    return claims


async def _approve_complete_tickets(run: Run) -> None:
    """Approve proposed drafts of tickets that hold their whole thread and have no reasoning
    left (nothing can make the approval stale), through the API processes in turn; half of
    them before the kill, the rest after."""
    limit = APPROVALS if run.victim is not None else APPROVALS // 2
    if len(run.approved) >= limit:
        return
    candidates = await _approvable(run)
    async with httpx.AsyncClient(timeout=30) as http:
        for draft_id, version in candidates[: limit - len(run.approved)]:
            base_url = run.api_urls[len(run.approved) % len(run.api_urls)]
            response = await http.post(
                f"{base_url}/api/v1/drafts/{draft_id}/approve",
                json={"version": version},
                headers=run.operator.headers,
            )
            if response.status_code == 409:  # changed since we looked: an operator moves on
                continue
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "approved"
            run.approved.add(draft_id)
            run.approvals_by_api[base_url] += 1


async def _approvable(run: Run) -> list[tuple[int, int]]:
    async with run.sessionmaker() as session:
        drafts = {
            ticket_id: (draft_id, version)
            for draft_id, version, ticket_id in await session.execute(
                select(Draft.id, Draft.version, Draft.ticket_id).where(Draft.status == "proposed")
            )
        }
        busy = set(
            await session.scalars(
                select(ReasoningTask.ticket_id).where(
                    ReasoningTask.status.in_(("pending", "running")),
                    ReasoningTask.ticket_id.in_(drafts),
                )
            )
        )
        threads = (
            await session.execute(
                select(
                    Message.ticket_id,
                    Message.mailbox_id,
                    Message.provider_thread_id,
                    func.count(),
                )
                .where(Message.ticket_id.in_(drafts), Message.direction == Direction.INBOUND.value)
                .group_by(Message.ticket_id, Message.mailbox_id, Message.provider_thread_id)
            )
        ).all()
    return sorted(
        drafts[ticket_id]
        for ticket_id, mailbox_id, thread_id, count in threads
        if ticket_id not in busy
        and count == run.mail.thread_sizes[run.mailbox_address[mailbox_id], thread_id or ""]
    )


async def _settled(run: Run) -> bool:
    """Killed, every message stored, every approval made and sent, nothing left in the outbox,
    and the dead worker's claims taken over. (The triage queue is not waited for: it drains at
    its own pace, and only what it did is checked.)"""
    victim = run.victim
    if victim is None or len(run.approved) < APPROVALS:
        return False
    total = sum(len(a.state.messages) for a in run.gmail.accounts.values())
    async with run.sessionmaker() as session:
        sent = await session.scalar(
            select(func.count()).where(Draft.id.in_(run.approved), Draft.status == "sent")
        )
        sending = await session.scalar(
            select(func.count()).where(OutboxEntry.status.in_(("pending", "sending")))
        )
        held = await session.scalar(
            select(func.count()).where(
                ReasoningTask.id.in_(victim.tasks), ReasoningTask.status != "done"
            )
        )
    stored = await _count(run.sessionmaker, Message)
    return (sent, sending, held, stored) == (APPROVALS, 0, 0, total)


async def _count(sessionmaker: SessionMaker, model: type[Message | QuarantinedMessage]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _progress(run: Run) -> dict[str, object]:
    async with run.sessionmaker() as session:
        tasks = Counter(await session.scalars(select(ReasoningTask.status)))
        outbox = Counter(await session.scalars(select(OutboxEntry.status)))
    return {
        "messages": await _count(run.sessionmaker, Message),
        "approved": len(run.approved),
        "victim": run.victim,
        "tasks": dict(tasks),
        "outbox": dict(outbox),
    }


def _tails(logs: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(logs.glob("*.log"))
    )


# --- the checks ---------------------------------------------------------------------------


def _message_id(raw: bytes) -> str:
    return str(HEADERS.parsebytes(raw, headersonly=True)["Message-ID"]).strip()


async def _check_every_message_on_one_ticket(run: Run) -> None:
    mailbox_of = {address: mailbox_id for mailbox_id, address in run.mailbox_address.items()}
    at_provider = {
        (mailbox_of[address], stored.id): _message_id(stored.raw)
        for address, account in run.gmail.accounts.items()
        for stored in account.state.messages.values()
    }
    async with run.sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    Message.mailbox_id,
                    Message.provider_message_id,
                    Message.message_id_header,
                    Message.provider_thread_id,
                    Message.ticket_id,
                )
            )
        ).all()
        assert await _count(run.sessionmaker, QuarantinedMessage) == 0
        unresolved = select(func.count()).where(SyncError.resolved_at.is_(None))
        assert await session.scalar(unresolved) == 0
    by_provider_id = Counter((mailbox_id, provider_id) for mailbox_id, provider_id, *_ in rows)
    assert set(by_provider_id) == set(at_provider), "lost or unknown messages"
    assert max(by_provider_id.values()) == 1, "a message stored twice"
    by_message_id = Counter(header for _m, _p, header, *_ in rows)
    assert set(by_message_id) == set(at_provider.values())
    assert max(by_message_id.values()) == 1, "a Message-ID stored twice"
    tickets_of_thread = defaultdict(set)
    for mailbox_id, _p, _h, thread_id, ticket_id in rows:
        tickets_of_thread[mailbox_id, thread_id].add(ticket_id)
    split = {thread: t for thread, t in tickets_of_thread.items() if len(t) != 1}
    assert not split, f"threads on several tickets: {split}"
    assert len(tickets_of_thread) == len(run.mail.thread_sizes)


async def _check_every_approved_reply_sent_once(run: Run) -> None:
    sent = [m for account in run.gmail.accounts.values() for m in sent_messages(account)]
    sent_ids = Counter(_message_id(m.raw) for m in sent)
    assert len(sent) == APPROVALS, f"{len(sent) - APPROVALS} replies too many at the provider"
    assert max(sent_ids.values()) == 1
    assert run.gmail.calls("messages.send") == APPROVALS
    async with run.sessionmaker() as session:
        entries = list(await session.scalars(select(OutboxEntry)))
        statuses = Counter(
            await session.scalars(select(Draft.status).where(Draft.id.in_(run.approved)))
        )
    assert statuses == {"sent": APPROVALS}
    assert sorted(e.draft_id for e in entries) == sorted(run.approved), "one entry per approval"
    assert {e.status for e in entries} == {"sent"}
    assert {e.message_id_header for e in entries} == set(sent_ids)
    assert set(run.approvals_by_api) == set(run.api_urls), "both API processes approved"


async def _check_the_dead_workers_claims_were_taken_over(run: Run) -> None:
    victim = run.victim
    assert victim is not None
    assert victim.mailboxes or victim.tasks or victim.outbox, "the killed worker held nothing"
    async with run.sessionmaker() as session:
        runs = list(
            await session.scalars(
                select(ActivityEntry).where(ActivityEntry.action == "mailbox.synced")
            )
        )
        for mailbox_id, expired in victim.mailboxes.items():
            taken_over = [
                r
                for r in runs
                if r.details["mailbox_id"] == mailbox_id
                and not r.details["owner"].startswith(victim.owner + "/")
                and datetime.fromisoformat(r.details["started_at"]) >= expired
            ]
            assert taken_over, f"mailbox {mailbox_id} was never synced after the lease ended"
        for task_id, expired in victim.tasks.items():
            task = await session.get_one(ReasoningTask, task_id)
            assert task.status == "done"
            assert task.attempts >= 2
            assert task.updated_at >= expired
        for entry_id, expired in victim.outbox.items():
            entry = await session.get_one(OutboxEntry, entry_id)
            assert (entry.status, entry.attempts) == ("sent", 2)
            assert entry.sent_at is not None
            assert entry.sent_at >= expired
    for mailbox_id in run.mailbox_address:
        spans = sorted(
            (
                datetime.fromisoformat(r.details["started_at"]),
                datetime.fromisoformat(r.details["finished_at"]),
            )
            for r in runs
            if r.details["mailbox_id"] == mailbox_id
        )
        for (_start, end), (next_start, _end) in itertools.pairwise(spans):
            assert end <= next_start, f"two syncs of mailbox {mailbox_id} overlapped"


async def _check_no_work_done_twice(run: Run) -> None:
    """No customer message triaged or drafted twice, no model call without its result (but for
    triages discarded because their ticket changed meanwhile, which are done again), no task
    given up, and no outbox entry claimed again but the dead worker's."""
    victim = run.victim
    assert victim is not None
    async with run.sessionmaker() as session:
        triaged = Counter(
            (await session.execute(select(TriageResult.ticket_id, TriageResult.message_id))).all()
        )
        drafted = Counter(
            (
                await session.execute(
                    select(Draft.ticket_id, Draft.source_message_id).where(
                        Draft.author.startswith("model:")
                    )
                )
            ).all()
        )
        calls = Counter(await session.scalars(select(ModelCall.task)))
        tasks = Counter(
            (t.status, t.attempts if t.id not in victim.tasks else "victim's")
            for t in await session.scalars(select(ReasoningTask))
        )
        attempts = Counter(
            (e.id in victim.outbox, e.attempts) for e in await session.scalars(select(OutboxEntry))
        )
    twice = {k: n for k, n in triaged.items() if n > 1}
    assert not twice, f"messages triaged more than once: {twice}"
    twice = {k: n for k, n in drafted.items() if n > 1}
    assert not twice, f"messages drafted more than once: {twice}"
    assert calls["proposal"] == drafted.total()
    assert calls["triage"] >= triaged.total()
    assert not [key for key in tasks if key[0] == "failed"], tasks
    assert set(attempts) <= {(False, 1), (True, 2)}, attempts
    await _check_syncs_cut_short_redid_at_most_their_pages(run)
    run.figures.update(
        triaged=triaged.total(),
        drafted=drafted.total(),
        triages_discarded=calls["triage"] - triaged.total(),
        tasks=dict(tasks),
    )


async def _check_syncs_cut_short_redid_at_most_their_pages(run: Run) -> None:
    """Every message was downloaded once, but for the pages in hand (the one being written and
    the next) of each sync that did not finish: the killed one, and any whose lease ran out
    while its process was starved of CPU (it stops at its next page; another takes over)."""
    requests = [r for a in run.gmail.accounts.values() for r in a.state.requests]
    started = sum(
        1
        for route, _path, query in requests
        if route in ("messages.list", "history.list") and "pageToken" not in query
    )
    async with run.sessionmaker() as session:
        finished = await session.scalar(
            select(func.count()).where(ActivityEntry.action == "mailbox.synced")
        )
    cut_short = started - (finished or 0)
    fetched = run.gmail.calls("messages.get")
    assert fetched <= MESSAGES + APPROVALS + cut_short * 2 * PAGE_SIZE, (fetched, cut_short)
    run.figures.update(syncs=started, syncs_cut_short=cut_short, fetches=fetched)


def _report(run: Run) -> None:
    """The figures, shown with `pytest -s`: how long each part took, and the work it cost."""
    started, timeline = run.timeline["started"], run.timeline
    synced, settled = timeline["synced"] - started, timeline["settled"] - started
    print(
        f"\nscale-out on PostgreSQL, {WORKERS} workers + {API_PROCESSES} API processes:"
        f"\n  {MESSAGES} messages in 2 mailboxes synced in {synced:.1f}s "
        f"({MESSAGES / synced:.0f} msg/s)"
        f"\n  worker killed at {timeline['killed'] - started:.1f}s holding {run.victim}"
        f"\n  {APPROVALS} approvals {dict(run.approvals_by_api)}, all sent, settled at "
        f"{settled:.1f}s"
        f"\n  work done: {run.figures}"
    )
