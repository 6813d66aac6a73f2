"""Synchronising a mailbox: provider changes in, tickets out, nothing lost, nothing twice.

The shape of a sync, and why:
- A lease on the mailbox row (owner + expiry, taken with one conditional UPDATE) makes sure no
  two processes sync the same mailbox at once, on SQLite and PostgreSQL alike. A crashed
  process's lease simply expires.
- Network I/O (listing, fetching) happens outside transactions; each page is then written in
  one short transaction, one SAVEPOINT per message.
- The checkpoint is stored in the same commit as the last page it covers, so a process killed
  at any point restarts from the previous checkpoint and dedupe skips what was already stored:
  the result is the same as an uninterrupted run.
- A page's transaction that loses a race with another writer (a deadlock PostgreSQL broke, a
  ticket changed meanwhile by triage or the sender) is run again from fresh reads: a race is
  not a failed sync.
- A message the provider will not give us is recorded as a sync error and retried on the next
  runs; it never blocks the rest. An expired checkpoint triggers one full resync.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from communication_agent.adapters.mail_provider import (
    ChangePage,
    CheckpointExpiredError,
    FetchedMessage,
    MailProvider,
    MessageFetchError,
    MessageGoneError,
    MessageRef,
    ProviderError,
    ProviderOpener,
    ReauthorisationRequiredError,
)
from communication_agent.core import metrics
from communication_agent.core.db import begin_write
from communication_agent.core.logging import get_logger
from communication_agent.models import Mailbox, Message, QuarantinedMessage, SyncError
from communication_agent.models.base import utcnow
from communication_agent.models.enums import TokenState
from communication_agent.services import activity
from communication_agent.services.errors import ConflictError, DomainError, NotFoundError
from communication_agent.services.ingestion import (
    SYNC_ACTOR,
    IncomingMessage,
    Outcome,
    SyncCounts,
    ingest_batch,
    parse_or_reason,
)
from communication_agent.services.mail_parsing import ParsedMessage

DEFAULT_LEASE = timedelta(minutes=2)  # renewed with every page; a dead owner's lease runs out
log = get_logger(__name__)
MAX_DEFERRED = 1000  # sent messages held back per run waiting for their ticket (see _store)
# Messages per `fetch_many` call (one Gmail batch request), and such calls in flight at once.
FETCH_CHUNK = 50
FETCH_CONCURRENCY = 4
RETRY_FAILED_PER_RUN = 100
NEEDS_REAUTH = TokenState.NEEDS_REAUTH.value
STORED = frozenset({Outcome.NEW_TICKET, Outcome.THREADED})  # outcomes that wrote a message
PAGE_ATTEMPTS = 5  # tries of a page's transaction that keeps losing races (see _lost_a_race)
RACE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure

Progress = Callable[[SyncCounts], None]
SessionMaker = async_sessionmaker[AsyncSession]


class SyncInProgressError(ConflictError):
    code = "sync_in_progress"


class MailboxNeedsReauthError(ConflictError):
    code = "needs_reauth"


class SyncFailedError(DomainError):
    """The provider failed in a way retries did not cure; the mailbox records it too."""

    code = "sync_failed"


@dataclass
class _Fetched:
    ref: MessageRef
    message: FetchedMessage | None
    error: str | None
    parsed: ParsedMessage | str | None = None
    gone: bool = False


@dataclass
class _StoredPage:
    """What a page's transaction did, applied to the run's tallies once it committed."""

    counts: SyncCounts = field(default_factory=SyncCounts)
    failed: set[str] = field(default_factory=set)
    deferred: list[_Fetched] = field(default_factory=list)


async def sync_mailbox(
    sessionmaker: SessionMaker,
    mailbox_id: int,
    open_provider: ProviderOpener,
    *,
    owner: str,
    progress: Progress | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> SyncCounts:
    """Run one sync of the mailbox; see the module docstring for the guarantees."""
    with structlog.contextvars.bound_contextvars(mailbox_id=mailbox_id):
        return await _sync(
            sessionmaker, mailbox_id, open_provider, owner=owner, progress=progress, lease=lease
        )


async def _sync(
    sessionmaker: SessionMaker,
    mailbox_id: int,
    open_provider: ProviderOpener,
    *,
    owner: str,
    progress: Progress | None,
    lease: timedelta,
) -> SyncCounts:
    owner = f"{owner}/{secrets.token_hex(4)}"  # per run: two runs of one process exclude too
    mailbox = await _claim(sessionmaker, mailbox_id, owner, lease)
    provider: MailProvider | None = None
    try:
        provider = await open_provider(mailbox)
        run = _MailboxSync(
            sessionmaker, mailbox, provider, owner=owner, progress=progress, lease=lease
        )
        try:
            await run.pages(mailbox.sync_checkpoint)
        except CheckpointExpiredError:
            await run.pages(None)
        await run.retry_failed()
        run.finish()
        await _record_success(sessionmaker, mailbox_id, run.counts, owner)
        _count_run(mailbox_id, "ok")
    except ReauthorisationRequiredError as exc:
        await _record_failure(sessionmaker, mailbox_id, str(exc), needs_reauth=True)
        _count_run(mailbox_id, "needs_reauth")
        raise MailboxNeedsReauthError(
            f"Mailbox {mailbox.name} must be reconnected: {exc}", mailbox_id=mailbox_id
        ) from exc
    except ProviderError as exc:
        await _record_failure(sessionmaker, mailbox_id, str(exc), needs_reauth=False)
        _count_run(mailbox_id, "failed")
        raise SyncFailedError(
            f"Syncing mailbox {mailbox.name} failed: {exc}. It will be retried.",
            mailbox_id=mailbox_id,
        ) from exc
    except DomainError:  # already says what happened (a lost lease, say)
        _count_run(mailbox_id, "interrupted")
        raise
    except Exception as exc:  # a bug or a database fault: visible on the mailbox, retried later
        log.exception("sync_crashed", mailbox_id=mailbox_id)
        reason = f"unexpected error ({type(exc).__name__}); see the server log"
        await _record_failure(sessionmaker, mailbox_id, reason, needs_reauth=False)
        _count_run(mailbox_id, "failed")
        raise SyncFailedError(
            f"Syncing mailbox {mailbox.name} failed: {reason}. It will be retried.",
            mailbox_id=mailbox_id,
        ) from exc
    finally:
        if provider is not None:
            await provider.aclose()
        await _release(sessionmaker, mailbox_id, owner)
    return run.counts


def _count_run(mailbox_id: int, outcome: str) -> None:
    metrics.SYNC_RUNS.labels(str(mailbox_id), outcome).inc()
    if outcome in {"failed", "needs_reauth"}:
        metrics.SYNC_ERRORS.labels(str(mailbox_id), "run").inc()


async def _claim(
    sessionmaker: SessionMaker, mailbox_id: int, owner: str, lease: timedelta
) -> Mailbox:
    async with sessionmaker() as session:
        await begin_write(session)
        mailbox = await session.get(Mailbox, mailbox_id)
        if mailbox is None:
            raise NotFoundError(f"Mailbox {mailbox_id} does not exist.", mailbox_id=mailbox_id)
        if mailbox.token_state == NEEDS_REAUTH:
            raise MailboxNeedsReauthError(
                f"Mailbox {mailbox.name} must be reconnected before it can sync: "
                f"{mailbox.token_error or 'its authorisation was revoked'}.",
                mailbox_id=mailbox_id,
            )
        now = utcnow()
        claimed = await session.execute(
            update(Mailbox)
            .where(
                Mailbox.id == mailbox_id,
                or_(
                    Mailbox.lease_owner.is_(None),
                    Mailbox.lease_expires_at < now,
                    Mailbox.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease, last_sync_started_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise SyncInProgressError(
                f"Mailbox {mailbox.name} is being synced by {mailbox.lease_owner}; "
                "try again later.",
                mailbox_id=mailbox_id,
            )
        await session.commit()
        return mailbox


async def _renew(session: AsyncSession, mailbox_id: int, owner: str, lease: timedelta) -> bool:
    """Extend the lease with the page being written; False when it is no longer ours (the page
    must then not be committed: the new holder stores it)."""
    renewed = await session.execute(
        update(Mailbox)
        .where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
        .values(lease_expires_at=utcnow() + lease)
        .execution_options(synchronize_session=False)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]


async def _release(sessionmaker: SessionMaker, mailbox_id: int, owner: str) -> None:
    async with sessionmaker() as session:
        await begin_write(session)
        await session.execute(
            update(Mailbox)
            .where(Mailbox.id == mailbox_id, Mailbox.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        await session.commit()


class _MailboxSync:
    """One run's state: the mailbox, its provider, the lease owner and the running counts."""

    def __init__(
        self,
        sessionmaker: SessionMaker,
        mailbox: Mailbox,
        provider: MailProvider,
        *,
        owner: str,
        progress: Progress | None,
        lease: timedelta,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.mailbox = mailbox
        self.provider = provider
        self.owner = owner
        self.progress = progress
        self.lease = lease
        self.counts = SyncCounts()
        self.failed_this_run: set[str] = set()
        self.deferred: list[_Fetched] = []
        self.page_stored: list[str] = []  # provider ids the page being written stores

    async def pages(self, checkpoint: str | None) -> None:
        """Store page after page; the next page is listed, fetched and parsed meanwhile."""
        upcoming = asyncio.create_task(self._prepare(checkpoint, None))
        try:
            while True:
                page, fetched = await upcoming
                last_page = page.next_page_token is None
                if not last_page:
                    upcoming = asyncio.create_task(self._prepare(checkpoint, page.next_page_token))
                await self._commit_page(fetched, page.checkpoint if last_page else None)
                if self.progress:
                    self.progress(self.counts)
                if last_page:
                    return
        finally:
            if not upcoming.done():
                upcoming.cancel()

    async def retry_failed(self) -> None:
        """Messages that failed in earlier runs (and not in this one) get another try."""
        async with self.sessionmaker() as session:
            pending = list(
                await session.scalars(
                    select(SyncError.provider_message_id)
                    .where(SyncError.mailbox_id == self.mailbox.id, SyncError.resolved_at.is_(None))
                    # least recently tried first: failures that persist cannot starve the rest
                    .order_by(SyncError.last_attempt_at, SyncError.id)
                    .limit(RETRY_FAILED_PER_RUN)
                )
            )
        retry = [MessageRef(p) for p in pending if p not in self.failed_this_run]
        fetched = await self._fetch_all(await self._unknown(retry))
        if fetched:  # failures again are recorded (attempts, time, reason) with the successes
            await self._commit_page(fetched, None)

    async def _prepare(
        self, checkpoint: str | None, page_token: str | None
    ) -> tuple[ChangePage, list[_Fetched]]:
        page = await self.provider.list_changes(checkpoint, page_token)
        new_refs = await self._unknown(page.refs)
        self.counts.duplicates += len(page.refs) - len(new_refs)
        return page, await self._fetch_all(new_refs)

    async def _commit_page(self, fetched: list[_Fetched], final_checkpoint: str | None) -> None:
        """One transaction: the page's messages, and the checkpoint when it is the last page.
        One that lost a race is rolled back and run again; the run's tallies change only with
        the commit."""
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            try:
                page, stored = await self._write_page(fetched, final_checkpoint)
            except (DBAPIError, StaleDataError) as exc:
                if attempt == PAGE_ATTEMPTS or not _lost_a_race(exc):
                    raise
                log.info("sync_page_retried", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.05 * attempt)
            else:
                break
        self.deferred = page.deferred
        self.counts.merge(page.counts)
        self.failed_this_run |= page.failed
        key = str(self.mailbox.id)
        for direction, count in stored.items():
            metrics.MESSAGES_INGESTED.labels(key, direction).inc(count)
        if page.counts.errors:
            metrics.SYNC_ERRORS.labels(key, "message").inc(page.counts.errors)

    async def _write_page(
        self, fetched: list[_Fetched], final_checkpoint: str | None
    ) -> tuple[_StoredPage, dict[str, int]]:
        async with self.sessionmaker() as session:
            await begin_write(session)
            page = await self._store(session, fetched)
            if final_checkpoint is not None:
                await session.execute(
                    update(Mailbox)
                    .where(Mailbox.id == self.mailbox.id)
                    .values(sync_checkpoint=final_checkpoint)
                    .execution_options(synchronize_session=False)
                )
            if not await _renew(session, self.mailbox.id, self.owner, self.lease):
                await session.rollback()  # another process holds the mailbox now: it goes on
                raise SyncInProgressError(
                    f"Mailbox {self.mailbox.name}: this sync lost its lease and stopped",
                    mailbox_id=self.mailbox.id,
                )
            stored = await _by_direction(session, self.mailbox.id, self.page_stored)
            await session.commit()
        return page, stored

    async def _unknown(self, refs: list[MessageRef]) -> list[MessageRef]:
        """The refs not stored yet (as messages or in quarantine): only those are downloaded."""
        if not refs:
            return []
        ids = [r.provider_message_id for r in refs]
        mailbox_id = self.mailbox.id
        async with self.sessionmaker() as session:
            known = set(
                await session.scalars(
                    select(Message.provider_message_id).where(
                        Message.mailbox_id == mailbox_id, Message.provider_message_id.in_(ids)
                    )
                )
            )
            known |= set(
                await session.scalars(
                    select(QuarantinedMessage.provider_message_id).where(
                        QuarantinedMessage.mailbox_id == mailbox_id,
                        QuarantinedMessage.provider_message_id.in_(ids),
                    )
                )
            )
        return [r for r in refs if r.provider_message_id not in known]

    async def _fetch_all(self, refs: list[MessageRef]) -> list[_Fetched]:
        """Download in chunks with bounded concurrency, then parse, all before the page's write
        transaction opens, so the SQLite write lock is held only for the writing."""
        semaphore = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(chunk: list[MessageRef]) -> list[_Fetched]:
            async with semaphore:
                fetched = await self.provider.fetch_many(chunk)
            return [
                _Fetched(ref, None, str(item), gone=isinstance(item, MessageGoneError))
                if isinstance(item, MessageFetchError)
                else _Fetched(ref, item, None)
                for ref, item in zip(chunk, fetched, strict=True)
            ]

        chunks = [refs[i : i + FETCH_CHUNK] for i in range(0, len(refs), FETCH_CHUNK)]
        results = [item for part in await asyncio.gather(*map(fetch, chunks)) for item in part]
        for item in results:
            if item.message is not None:
                item.parsed = parse_or_reason(item.message.raw)
        # Oldest first, so that a reply finds the message it answers when both are in one page.
        return sorted(results, key=_arrival)

    async def _store(self, session: AsyncSession, fetched: list[_Fetched]) -> _StoredPage:
        """Store a page on the fast path; if a constraint still trips (a message delivered twice
        within one page, say), roll the page back and replay it message by message."""
        # Mail we sent whose ticket was not known yet is tried again after each later page: a
        # first sync lists newest first, so the customer's message may come pages after our
        # reply. What still has no ticket at the end is counted as ignored (see `finish`).
        earlier = self.deferred
        deferred: list[_Fetched] = []
        self.page_stored = []
        try:
            counts, failed = await self._store_page(session, fetched, batch=True, deferred=deferred)
            if earlier:
                again, _ = await self._store_page(session, earlier, batch=True, deferred=deferred)
                counts.merge(again)
                counts.fetched -= len(earlier)
        except IntegrityError:  # a race with another writer propagates: see _commit_page
            await session.rollback()
            await begin_write(session)
            deferred = []
            self.page_stored = []
            counts, failed = await self._store_page(
                session, fetched + earlier, batch=False, deferred=deferred
            )
            counts.fetched -= len(earlier)
        return _StoredPage(counts, failed, deferred)

    def finish(self) -> None:
        """Deferred sent mail that never found its ticket was unrelated: ignored."""
        self.counts.ignored += len(self.deferred)
        self.deferred = []

    async def _store_page(
        self,
        session: AsyncSession,
        fetched: list[_Fetched],
        *,
        batch: bool,
        deferred: list[_Fetched],
    ) -> tuple[SyncCounts, set[str]]:
        mailbox = await session.get_one(Mailbox, self.mailbox.id)
        counts, failed = SyncCounts(), set()
        good = []
        for item in fetched:
            provider_id = item.ref.provider_message_id
            if item.message is None:
                failed.add(provider_id)
                await _record_sync_error(session, mailbox.id, provider_id, item.error or "")
                counts.errors += 1
                if item.gone:  # deleted at the provider: nothing to retry
                    await _resolve_sync_errors(session, mailbox.id, [provider_id])
            else:
                good.append(item)
        counts.fetched += len(good)
        incoming = [_incoming(item) for item in good]
        outcomes = await ingest_batch(session, mailbox, incoming, isolated=not batch)
        for item, outcome in zip(good, outcomes, strict=True):
            if outcome is Outcome.IGNORED and len(deferred) < MAX_DEFERRED:
                deferred.append(item)  # mail we sent, its ticket perhaps on a later page
            else:
                counts.add(outcome)
            if outcome in STORED:
                self.page_stored.append(item.ref.provider_message_id)
        await _resolve_sync_errors(session, mailbox.id, [i.ref.provider_message_id for i in good])
        await session.flush()
        return counts, failed


def _lost_a_race(exc: DBAPIError | StaleDataError) -> bool:
    """A deadlock PostgreSQL broke (two mailboxes' syncs inserting the same new contacts in
    different orders, say), or a ticket on the page changed since it was read (triage routed
    it, the sender answered it): nothing was wrong with the page, it only has to run again."""
    if isinstance(exc, StaleDataError):
        return True
    return getattr(exc.orig, "sqlstate", None) in RACE_SQLSTATES


async def _by_direction(
    session: AsyncSession, mailbox_id: int, provider_ids: Sequence[str]
) -> dict[str, int]:
    """How many of these just-stored messages are inbound and outbound (for the metrics)."""
    if not provider_ids:
        return {}
    rows = await session.execute(
        select(Message.direction, func.count())
        .where(Message.mailbox_id == mailbox_id, Message.provider_message_id.in_(provider_ids))
        .group_by(Message.direction)
    )
    return {direction: count for direction, count in rows.all()}


def _arrival(item: _Fetched) -> tuple[bool, datetime]:
    received = item.message.received_at if item.message else None
    return (received is None, received or datetime.max.replace(tzinfo=UTC))


def _incoming(item: _Fetched) -> IncomingMessage:
    message = item.message
    if message is None:
        raise ValueError("only fetched messages can be ingested")
    return IncomingMessage(
        raw=message.raw,
        provider_message_id=message.ref.provider_message_id,
        provider_thread_id=message.ref.thread_id,
        received_at=message.received_at,
        sent_by_mailbox=message.sent_by_mailbox,
        parsed=item.parsed,
    )


async def _record_sync_error(
    session: AsyncSession, mailbox_id: int, provider_id: str, error: str
) -> None:
    existing = await session.scalar(
        select(SyncError).where(
            SyncError.mailbox_id == mailbox_id, SyncError.provider_message_id == provider_id
        )
    )
    if existing is None:
        session.add(SyncError(mailbox_id=mailbox_id, provider_message_id=provider_id, error=error))
    else:
        existing.attempts += 1
        existing.error = error
        existing.last_attempt_at = utcnow()
        existing.resolved_at = None
    await session.flush()


async def _resolve_sync_errors(
    session: AsyncSession, mailbox_id: int, provider_ids: list[str]
) -> None:
    """Mark earlier failures of these messages resolved: one statement per page."""
    if not provider_ids:
        return
    await session.execute(
        update(SyncError)
        .where(
            SyncError.mailbox_id == mailbox_id,
            SyncError.provider_message_id.in_(provider_ids),
            SyncError.resolved_at.is_(None),
        )
        .values(resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def _record_success(
    sessionmaker: SessionMaker, mailbox_id: int, counts: SyncCounts, owner: str
) -> None:
    """Stamp the mailbox healthy and log the run, with owner and times so runs can be audited."""
    async with sessionmaker() as session:
        await begin_write(session)
        mailbox = await session.get_one(Mailbox, mailbox_id)
        mailbox.last_sync_succeeded_at = utcnow()
        mailbox.consecutive_errors = 0
        mailbox.last_error = None
        activity.record(
            session,
            SYNC_ACTOR,
            "mailbox.synced",
            details={
                "mailbox_id": mailbox_id,
                "owner": owner,
                "started_at": _iso(mailbox.last_sync_started_at),
                "finished_at": _iso(utcnow()),
                **counts.as_dict(),
            },
        )
        await session.commit()


async def _record_failure(
    sessionmaker: SessionMaker, mailbox_id: int, error: str, *, needs_reauth: bool
) -> None:
    async with sessionmaker() as session:
        await begin_write(session)
        mailbox = await session.get_one(Mailbox, mailbox_id)
        mailbox.consecutive_errors += 1
        mailbox.last_error = error
        if needs_reauth:
            mailbox.token_state = NEEDS_REAUTH
            mailbox.token_error = error
        activity.record(
            session,
            SYNC_ACTOR,
            "mailbox.sync_failed",
            details={"mailbox_id": mailbox_id, "error": error, "needs_reauth": needs_reauth},
        )
        await session.commit()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
