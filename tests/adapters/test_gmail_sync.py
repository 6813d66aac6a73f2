"""Gmail sync end to end: the real adapter, over real HTTP, against the loopback Gmail server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.core.config import Settings
from communication_agent.models import Mailbox, Message, SyncError, Ticket
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor
from communication_agent.services.ingestion import SyncCounts
from tests.conftest import TEST_SECRET_KEY
from tests.gmail_server import Fault, GmailTestServer
from tests.mail import raw_email

SessionMaker = async_sessionmaker[AsyncSession]
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=2)
ADDRESS = "support@company.example"


@pytest.fixture
def gmail() -> Iterator[GmailTestServer]:
    with GmailTestServer() as server:
        yield server


def gmail_settings(settings: Settings, gmail: GmailTestServer, **overrides: object) -> Settings:
    return settings.model_copy(
        update={
            "gmail_api_url": gmail.api_url,
            "google_token_url": gmail.token_url,
            "google_auth_url": gmail.auth_url,
            "google_client_id": gmail.state.client_id,
            "google_client_secret": SecretStr(gmail.state.client_secret),
            **overrides,
        }
    )


async def _connect(sessionmaker: SessionMaker, gmail: GmailTestServer) -> int:
    async with sessionmaker() as session:
        mailbox = await mailboxes.connect_gmail(
            session,
            Actor.system("tests"),
            address=ADDRESS,
            refresh_token=gmail.issue_refresh_token(),
            secret_key=TEST_SECRET_KEY,
        )
        return mailbox.id


async def _sync(
    sessionmaker: SessionMaker,
    settings: Settings,
    gmail: GmailTestServer,
    mailbox_id: int,
    **overrides: object,
) -> SyncCounts:
    opener = provider_opener(
        gmail_settings(settings, gmail, **overrides), TEST_SECRET_KEY, retry=FAST
    )
    return await sync.sync_mailbox(sessionmaker, mailbox_id, opener, owner="test")


async def _messages(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def test_full_then_incremental_sync_with_threads_and_sent_mail(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    first = gmail.add_message(
        raw_email(message_id="<q1@x>", subject="Broken login"), thread_id="thr-1"
    )
    gmail.add_message(raw_email(message_id="<promo@x>"), labels=("INBOX", "CATEGORY_PROMOTIONS"))
    gmail.add_message(raw_email(message_id="<spam@x>"), labels=("SPAM",))
    mailbox_id = await _connect(sessionmaker, gmail)

    counts = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (counts.fetched, counts.new_tickets) == (1, 1)
    async with sessionmaker() as session:
        mailbox = await session.get_one(Mailbox, mailbox_id)
        assert mailbox.sync_checkpoint == str(gmail.state.history_id)

    # The operator answers in Gmail directly, then the customer replies in the thread.
    gmail.add_message(
        raw_email(
            sender=ADDRESS, to="customer@example.org", message_id="<ans@x>", in_reply_to="<q1@x>"
        ),
        thread_id="thr-1",
        labels=("SENT",),
    )
    gmail.add_message(raw_email(message_id="<q2@x>", subject="Re: Broken login"), thread_id="thr-1")
    gmail.add_message(raw_email(message_id="<new@x>", subject="Another question"))
    gmail.add_message(raw_email(message_id="<social@x>"), labels=("INBOX", "CATEGORY_SOCIAL"))
    incremental = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (incremental.fetched, incremental.threaded, incremental.new_tickets) == (3, 2, 1)
    assert gmail.calls("history.list") == 1
    async with sessionmaker() as session:
        ticket_id = await session.scalar(
            select(Message.ticket_id).where(Message.message_id_header == "<q1@x>")
        )
        ticket = await session.get_one(Ticket, ticket_id)
        assert ticket.state == "NEEDS_ACTION"  # answered elsewhere, then the customer wrote again
        directions = (
            await session.scalars(
                select(Message.direction).where(Message.ticket_id == ticket_id).order_by(Message.id)
            )
        ).all()
        assert list(directions) == ["inbound", "outbound", "inbound"]
        stored = await session.scalar(select(Message).where(Message.message_id_header == "<q1@x>"))
        assert stored is not None
        assert (stored.provider_message_id, stored.provider_thread_id) == (first.id, "thr-1")


async def test_request_shapes_match_the_discovery_document(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    gmail.add_message(raw_email())
    mailbox_id = await _connect(sessionmaker, gmail)
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    gmail.add_message(raw_email())
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    by_route = {route: query for route, _path, query in gmail.state.requests}
    assert set(by_route["messages.list"]) <= {"q", "maxResults", "pageToken"}
    assert "newer_than:30d" in by_route["messages.list"]["q"][0]
    assert by_route["messages.get"] == {"format": ["raw"]}
    assert by_route["history.list"]["historyTypes"] == ["messageAdded"]
    assert by_route["history.list"]["startHistoryId"][0].isdigit()
    assert all(
        not any(k.startswith("code") or k == "refresh_token" for k in q)
        for r, _p, q in gmail.state.requests
        if r == "token"
    )


async def test_paging_an_expired_history_and_no_duplicates(
    settings: Settings,
    sessionmaker: SessionMaker,
    gmail: GmailTestServer,
) -> None:
    for i in range(7):
        gmail.add_message(raw_email(message_id=f"<p{i}@x>"))
    mailbox_id = await _connect(sessionmaker, gmail)
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id, gmail_page_size=3)
    assert counts.new_tickets == 7
    assert gmail.calls("messages.list") == 3
    gmail.add_message(raw_email(message_id="<late@x>"))
    gmail.expire_history()
    resync = await _sync(sessionmaker, settings, gmail, mailbox_id, gmail_page_size=3)
    assert (resync.new_tickets, resync.duplicates) == (1, 7)
    assert await _messages(sessionmaker) == 8


async def test_rate_limits_and_server_errors_are_retried(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    gmail.add_message(raw_email(message_id="<r1@x>"))
    gmail.add_message(raw_email(message_id="<r2@x>"))
    mailbox_id = await _connect(sessionmaker, gmail)
    gmail.inject(Fault("messages.list", status=429, retry_after="1"))
    gmail.inject(Fault("messages.get", status=503, times=2))
    gmail.inject(Fault("messages.get", status=403, times=1))
    gmail.inject(Fault("profile", status=500))
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (counts.new_tickets, counts.errors) == (2, 0)
    assert gmail.calls("messages.list") == 2


async def test_a_message_that_keeps_failing_is_recorded_and_retried_next_run(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    bad = gmail.add_message(raw_email(message_id="<bad@x>"))
    gmail.add_message(raw_email(message_id="<good@x>"))
    mailbox_id = await _connect(sessionmaker, gmail)
    gmail.inject(Fault("messages.get", status=500, times=FAST.attempts, message_id=bad.id))
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (counts.new_tickets, counts.errors) == (1, 1)
    async with sessionmaker() as session:
        [error] = (await session.scalars(select(SyncError))).all()
        assert error.provider_message_id == bad.id
    again = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert again.new_tickets == 1
    assert await _messages(sessionmaker) == 2


async def test_expired_access_tokens_are_refreshed_and_revoked_grants_need_reauth(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    gmail.add_message(raw_email(message_id="<t1@x>"))
    mailbox_id = await _connect(sessionmaker, gmail)
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    gmail.expire_access_tokens()  # the next API call gets 401 and must refresh
    gmail.add_message(raw_email(message_id="<t2@x>"))
    assert (await _sync(sessionmaker, settings, gmail, mailbox_id)).new_tickets == 1

    gmail.revoke_all_tokens()
    gmail.add_message(raw_email(message_id="<t3@x>"))
    with pytest.raises(sync.MailboxNeedsReauthError, match="invalid_grant"):
        await _sync(sessionmaker, settings, gmail, mailbox_id)
    async with sessionmaker() as session:
        mailbox = await session.get_one(Mailbox, mailbox_id)
        assert mailbox.token_state == "needs_reauth"
        assert "Testing" in (mailbox.token_error or "")  # the 7-day refresh-token hint
    assert await _messages(sessionmaker) == 2  # nothing lost, nothing half-written


async def test_stored_credentials_are_encrypted(
    sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    mailbox_id = await _connect(sessionmaker, gmail)
    [refresh_token] = gmail.state.refresh_tokens
    async with sessionmaker() as session:
        mailbox = await session.get_one(Mailbox, mailbox_id)
        assert mailbox.credentials is not None
        assert refresh_token.encode() not in mailbox.credentials


async def test_a_mailbox_of_malformed_mime_syncs_without_losing_anything(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    broken = [
        b"From: a@example.org\nMessage-ID: <cs@x>\nContent-Type: text/plain; charset=x-klingon\n\ncaf\xe9",
        b'From: a@example.org\nMessage-ID: <mp@x>\nContent-Type: multipart/mixed; boundary="NOPE"\n\nno boundary here',
        "From: Zoë <z@example.org>\nSubject: Größe\nMessage-ID: <8bit@x>\n\nhi".encode(),
        b"From: a@example.org\n\nno message id, no date, no subject",
        b"From: a@example.org\nMessage-ID: <huge@x>\n\n" + b"y" * 3_000_000,
        b"Subject: no sender at all\nMessage-ID: <nosender@x>\n\nwho am I",
        b"\x00\x01\x02 not an email",
    ]
    for raw in broken:
        gmail.add_message(raw)
    mailbox_id = await _connect(sessionmaker, gmail)
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (counts.fetched, counts.new_messages, counts.quarantined, counts.errors) == (7, 5, 2, 0)
    async with sessionmaker() as session:
        subjects = set((await session.scalars(select(Message.subject))).all())
        assert "Größe" in subjects
        big = await session.scalar(select(Message).where(Message.message_id_header == "<huge@x>"))
        assert big is not None
        assert len(big.body_text) == 3_000_000
    gets = gmail.calls("messages.get")
    gmail.expire_history()  # force a full relisting: stored and quarantined mail is not fetched again
    again = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (again.fetched, again.duplicates) == (0, 7)
    assert gmail.calls("messages.get") == gets


async def test_batched_fetches_retry_only_the_calls_that_failed(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    limited = gmail.add_message(raw_email(message_id="<limited@x>"))
    gone = gmail.add_message(raw_email(message_id="<gone@x>"))
    fine = gmail.add_message(raw_email(message_id="<fine@x>"))
    mailbox_id = await _connect(sessionmaker, gmail)
    gmail.inject(Fault("batch", status=503))  # the whole batch fails once
    gmail.inject(Fault("messages.get", status=429, retry_after="0", message_id=limited.id))
    gmail.inject(Fault("messages.get", status=404, times=99, message_id=gone.id))
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id)
    assert (counts.new_tickets, counts.errors) == (2, 1)
    gets = [path.rsplit("/", 1)[1] for r, path, _q in gmail.state.requests if r == "messages.get"]
    assert (gets.count(limited.id), gets.count(gone.id), gets.count(fine.id)) == (2, 1, 1)
    assert gmail.calls("batch") == 3  # the 503, the one with the 429, the retry of one call
    async with sessionmaker() as session:
        [error] = (await session.scalars(select(SyncError))).all()
        assert (error.provider_message_id, "no longer exists" in error.error) == (gone.id, True)


async def test_a_first_sync_keeps_our_reply_listed_pages_before_its_question(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    """Gmail lists newest first: with one message a page, our reply comes a page before the
    customer's question; it waits for its ticket instead of being dropped."""
    gmail.add_message(raw_email(message_id="<q@x>", subject="Broken"), thread_id="t-9")
    gmail.add_message(
        raw_email(
            sender=ADDRESS, subject="Re: Broken", in_reply_to="<q@x>", message_id="<a@company>"
        ),
        thread_id="t-9",
        labels=("SENT",),
    )
    gmail.add_message(raw_email(sender=ADDRESS, subject="Lunch?", message_id="<lunch@company>"),
                      labels=("SENT",))  # fmt: skip
    mailbox_id = await _connect(sessionmaker, gmail)
    counts = await _sync(sessionmaker, settings, gmail, mailbox_id, gmail_page_size=1)
    assert (counts.new_tickets, counts.threaded, counts.ignored) == (1, 1, 1)
    async with sessionmaker() as session:
        ticket = (await session.scalars(select(Ticket))).one()
        assert ticket.state == "WAITING_OTHERS"
    assert await _messages(sessionmaker) == 2  # the unrelated sent mail belongs to no ticket


async def test_mail_forging_our_address_without_the_sent_label_is_not_taken_for_ours(
    settings: Settings, sessionmaker: SessionMaker, gmail: GmailTestServer
) -> None:
    gmail.add_message(raw_email(message_id="<q2@x>", subject="Help"), thread_id="t-f")
    mailbox_id = await _connect(sessionmaker, gmail)
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    gmail.add_message(  # claims to be us, arrives in the inbox: a forgery, not our reply
        raw_email(sender=ADDRESS, subject="Re: Help", in_reply_to="<q2@x>"), thread_id="t-f"
    )
    await _sync(sessionmaker, settings, gmail, mailbox_id)
    async with sessionmaker() as session:
        ticket = (await session.scalars(select(Ticket))).one()
        directions = set(await session.scalars(select(Message.direction)))
    assert directions == {"inbound"}
    assert ticket.state == "NEW"  # not moved to WAITING_OTHERS as if we had answered
