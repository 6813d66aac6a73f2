"""Sync guarantees, with a small fake provider (implementing the port) for the fault cases;
the real providers are tested against their own formats and servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.local_folder import LocalFolderProvider
from communication_agent.adapters.mail_provider import (
    ChangePage,
    CheckpointExpiredError,
    FetchedMessage,
    MailboxProfile,
    MailProvider,
    MessageFetchError,
    MessageGoneError,
    MessageRef,
    ReauthorisationRequiredError,
    fetch_each,
)
from communication_agent.models import Mailbox, Message, SyncError
from communication_agent.models.base import utcnow
from communication_agent.services import sync
from communication_agent.services.sync import DEFAULT_LEASE as LEASE
from tests.factories import Factory
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]


class FakeProvider:
    """Serves `messages` in pages of two, with a checkpoint; can fail in chosen ways."""

    def __init__(self, messages: dict[str, bytes], checkpoint: str = "100") -> None:
        self.messages = messages
        self.checkpoint = checkpoint
        self.failing: set[str] = set()
        self.gone: set[str] = set()
        self.expired: set[str] = set()
        self.revoked = False
        self.listed_from: list[str | None] = []
        self.fetched: list[str] = []

    async def profile(self) -> MailboxProfile:
        return MailboxProfile(address="support@company.example", checkpoint=self.checkpoint)

    async def list_changes(self, checkpoint: str | None, page_token: str | None) -> ChangePage:
        if self.revoked:
            raise ReauthorisationRequiredError("invalid_grant: Token has been expired or revoked.")
        if checkpoint in self.expired:
            raise CheckpointExpiredError("history expired")
        if page_token is None:
            self.listed_from.append(checkpoint)
        ids = sorted(self.messages)
        start = int(page_token or 0)
        refs = [MessageRef(i, thread_id=None) for i in ids[start : start + 2]]
        more = start + 2 < len(ids)
        return ChangePage(
            refs=refs, next_page_token=str(start + 2) if more else None, checkpoint=self.checkpoint
        )

    async def fetch(self, ref: MessageRef) -> FetchedMessage:
        self.fetched.append(ref.provider_message_id)
        if ref.provider_message_id in self.failing:
            raise MessageFetchError(f"503 for {ref.provider_message_id}")
        if ref.provider_message_id in self.gone:
            raise MessageGoneError(f"message {ref.provider_message_id} no longer exists")
        return FetchedMessage(
            ref=ref, raw=self.messages[ref.provider_message_id], received_at=utcnow()
        )

    async def fetch_many(self, refs: list[MessageRef]) -> list[FetchedMessage | MessageFetchError]:
        return await fetch_each(self.fetch, refs)

    async def send(self, raw: bytes, thread_id: str | None) -> MessageRef:
        raise NotImplementedError

    async def find_sent(self, message_id_header: str) -> MessageRef | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _opener(provider: MailProvider) -> Callable[[Mailbox], Awaitable[MailProvider]]:
    async def open_provider(_mailbox: Mailbox) -> MailProvider:
        return provider

    return open_provider


async def _count(sessionmaker: SessionMaker, mailbox_id: int) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Message).where(Message.mailbox_id == mailbox_id)
            )
            or 0
        )


async def _mailbox_row(sessionmaker: SessionMaker, mailbox_id: int) -> Mailbox:
    async with sessionmaker() as session:
        return await session.get_one(Mailbox, mailbox_id)


def _messages(n: int) -> dict[str, bytes]:
    return {
        f"id{i:03}": raw_email(message_id=f"<s{i}@x>", subject=f"Question {i}") for i in range(n)
    }


async def test_sync_stores_everything_then_advances_the_checkpoint(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = FakeProvider(_messages(5))
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (counts.fetched, counts.new_tickets, counts.duplicates, counts.errors) == (5, 5, 0, 0)
    stored = await _mailbox_row(sessionmaker, mailbox.id)
    assert stored.sync_checkpoint == "100"
    assert stored.last_sync_succeeded_at is not None
    assert stored.lease_owner is None
    provider.checkpoint = "120"
    again = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (again.fetched, again.duplicates) == (0, 5)
    assert provider.listed_from == [None, "100"]
    assert provider.fetched.count("id000") == 1  # known messages are not downloaded again


async def test_a_failing_message_is_recorded_retried_and_blocks_nothing(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = FakeProvider(_messages(4))
    provider.failing = {"id002"}
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (counts.fetched, counts.errors) == (3, 1)
    async with sessionmaker() as session:
        [error] = (await session.scalars(select(SyncError))).all()
        assert (error.provider_message_id, error.resolved_at) == ("id002", None)
        assert "503" in error.error
    provider.failing = set()
    await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert await _count(sessionmaker, mailbox.id) == 4
    async with sessionmaker() as session:
        [error] = (await session.scalars(select(SyncError))).all()
        assert error.resolved_at is not None


async def test_an_expired_checkpoint_triggers_a_full_resync_without_duplicates(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = FakeProvider(_messages(3))
    await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    provider.messages |= {"id999": raw_email(message_id="<late@x>")}
    provider.expired = {"100"}
    provider.checkpoint = "500"
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (counts.fetched, counts.duplicates) == (1, 3)
    assert await _count(sessionmaker, mailbox.id) == 4
    assert (await _mailbox_row(sessionmaker, mailbox.id)).sync_checkpoint == "500"


async def test_a_revoked_grant_marks_the_mailbox_and_stops_its_sync(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = FakeProvider(_messages(1))
    provider.revoked = True
    with pytest.raises(sync.MailboxNeedsReauthError, match="must be reconnected"):
        await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    stored = await _mailbox_row(sessionmaker, mailbox.id)
    assert stored.token_state == "needs_reauth"
    assert "invalid_grant" in (stored.token_error or "")
    assert stored.consecutive_errors == 1
    assert stored.lease_owner is None
    provider.revoked = False
    with pytest.raises(sync.MailboxNeedsReauthError, match="before it can sync"):
        await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")


async def test_a_held_lease_refuses_a_second_sync_until_it_expires(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.lease_owner, row.lease_expires_at = "worker-a", utcnow() + LEASE
        await session.commit()
    provider = FakeProvider(_messages(1))
    with pytest.raises(sync.SyncInProgressError, match="worker-a"):
        await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="worker-b")
    async with sessionmaker() as session:
        row = await session.get_one(Mailbox, mailbox.id)
        row.lease_expires_at = utcnow() - LEASE  # worker-a died; its lease ran out
        await session.commit()
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="worker-b")
    assert counts.new_tickets == 1


async def test_a_local_folder_syncs_through_the_same_path(
    factory: Factory, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    mailbox = await factory.mailbox()
    (tmp_path / "1.eml").write_bytes(raw_email(message_id="<l1@x>"))
    (tmp_path / "2.eml").write_bytes(raw_email(message_id="<l2@x>", in_reply_to="<l1@x>"))
    provider = LocalFolderProvider(tmp_path, mailbox.address)
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (counts.new_tickets, counts.threaded) == (1, 1)


class _TakenOver(FakeProvider):
    """Once the first page is committed, another process takes the mailbox over (before the
    second page is written)."""

    def __init__(self, messages: dict[str, bytes], sessionmaker: SessionMaker, mailbox_id: int):
        super().__init__(messages)
        self.sessionmaker, self.mailbox_id = sessionmaker, mailbox_id

    async def list_changes(self, checkpoint: str | None, page_token: str | None) -> ChangePage:
        if page_token is not None:
            while True:  # wait for page one's commit (reads never block under WAL)
                async with self.sessionmaker() as session:
                    if len((await session.scalars(select(Message.id))).all()) >= 2:
                        break
                await asyncio.sleep(0.01)
            async with self.sessionmaker() as session:
                row = await session.get_one(Mailbox, self.mailbox_id)
                row.lease_owner, row.lease_expires_at = "worker-z", utcnow() + LEASE
                await session.commit()
        return await super().list_changes(checkpoint, page_token)


async def test_a_sync_that_lost_its_lease_stops_without_writing_more(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = _TakenOver(_messages(4), sessionmaker, mailbox.id)
    with pytest.raises(sync.SyncInProgressError, match="lost its lease"):
        await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="worker-a")
    async with sessionmaker() as session:
        stored = len((await session.scalars(select(Message))).all())
        row = await session.get_one(Mailbox, mailbox.id)
    assert stored == 2  # the first page only: the second belongs to the new holder
    assert (row.lease_owner, row.sync_checkpoint) == ("worker-z", None)


async def test_a_message_deleted_since_listing_is_recorded_once_and_not_retried(
    factory: Factory, sessionmaker: SessionMaker
) -> None:
    mailbox = await factory.mailbox()
    provider = FakeProvider(_messages(3))
    provider.gone = {"id001"}
    counts = await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert (counts.new_tickets, counts.errors) == (2, 1)
    async with sessionmaker() as session:
        [error] = (await session.scalars(select(SyncError))).all()
        assert (error.provider_message_id, error.resolved_at is not None) == ("id001", True)
    provider.fetched.clear()
    del provider.messages["id001"]  # no longer listed either, as at the real provider
    await sync.sync_mailbox(sessionmaker, mailbox.id, _opener(provider), owner="t")
    assert "id001" not in provider.fetched  # not retried: it is gone
