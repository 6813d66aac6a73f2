"""The mail-provider port: what sync and sending need from a mailbox, and nothing more.

A provider lists changes since a checkpoint (an opaque string it defines: Gmail's historyId, or
nothing for a folder that is rescanned), fetches messages' raw bytes (as many at once as its
API allows), sends raw bytes, finds what it sent, and describes its mailbox. Errors are
reported as the exceptions below so that services can react to their meaning (re-authorise,
resync, retry later) without knowing the provider.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from communication_agent.models import Mailbox


@dataclass(frozen=True)
class MessageRef:
    provider_message_id: str
    thread_id: str | None = None


@dataclass(frozen=True)
class ChangePage:
    """One page of changes. `checkpoint` is where the next sync starts once every page up to
    and including the last has been committed; it is set on every page and final on the last."""

    refs: list[MessageRef]
    next_page_token: str | None
    checkpoint: str | None


@dataclass(frozen=True)
class FetchedMessage:
    ref: MessageRef
    raw: bytes
    received_at: datetime | None = None
    sent_by_mailbox: bool = False
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MailboxProfile:
    address: str
    checkpoint: str | None


class ProviderError(Exception):
    """Base class; the message is safe to show (it never contains a credential)."""


class CheckpointExpiredError(ProviderError):
    """The provider no longer knows the checkpoint (Gmail: historyId too old); resync fully."""


class ReauthorisationRequiredError(ProviderError):
    """The stored grant is revoked or expired (OAuth `invalid_grant`); a person must reconnect."""


class ProviderUnavailableError(ProviderError):
    """A transient failure that survived the retries (rate limits, 5xx, timeouts);
    `retry_after` is the provider's own hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MessageFetchError(ProviderError):
    """One message could not be fetched; the rest of the sync goes on."""


class MessageGoneError(MessageFetchError):
    """The message was deleted since it was listed: recorded, never retried."""


class MailProvider(Protocol):
    async def profile(self) -> MailboxProfile: ...

    async def list_changes(self, checkpoint: str | None, page_token: str | None) -> ChangePage: ...

    async def fetch_many(self, refs: list[MessageRef]) -> list[FetchedMessage | MessageFetchError]:
        """One result per ref, in order: the message, or why it could not be fetched (the sync
        records it and goes on). Providers fetch as many at once as their API allows."""
        ...

    async def send(self, raw: bytes, thread_id: str | None) -> MessageRef: ...

    async def find_sent(self, message_id_header: str) -> MessageRef | None:
        """The message in the mailbox with this Message-ID, if any: how a retry after a crash
        learns that the provider already accepted the reply."""
        ...

    async def aclose(self) -> None: ...


# How services get a provider for a mailbox without knowing the concrete classes: the entry
# points (API, CLI, worker) pass one in, built by `adapters.factory.provider_opener`.
ProviderOpener = Callable[[Mailbox], Awaitable[MailProvider]]


async def fetch_each(
    fetch: Callable[[MessageRef], Awaitable[FetchedMessage]], refs: list[MessageRef]
) -> list[FetchedMessage | MessageFetchError]:
    """`fetch_many` for a provider without a batch API: one by one, errors kept per message."""
    results: list[FetchedMessage | MessageFetchError] = []
    for ref in refs:
        try:
            results.append(await fetch(ref))
        except MessageFetchError as exc:
            results.append(exc)
    return results
