"""Property-based tests of the MIME parser and of ingestion: whatever bytes arrive, the parser
answers (a message or a reason), stores nothing PostgreSQL cannot hold, and every message ends
up stored or quarantined, never lost."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import begin_write
from communication_agent.models import Message, QuarantinedMessage
from communication_agent.services.ingestion import (
    IncomingMessage,
    Outcome,
    ingest_message,
    parse_or_reason,
)
from communication_agent.services.mail_parsing import ParsedMessage
from tests.factories import Factory

# Header text: any Unicode, including line breaks, NUL and other control characters.
header_text = st.text(min_size=0, max_size=120)
local_part = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}", fullmatch=True)
address = st.builds(lambda user, host: f"{user}@{host}.example", local_part, local_part)
body_text = st.text(min_size=0, max_size=400)
filename = st.text(min_size=0, max_size=60)


def _header(draw: st.DrawFn, name: str, value: str) -> bytes:
    """Raw 8-bit UTF-8, or an RFC 2047 encoded word, as real senders do; line breaks inside a
    value are left in on purpose (a folded or injected header)."""
    if draw(st.booleans()):
        encoded = base64.b64encode(value.encode("utf-8", "surrogatepass")).decode()
        return f"{name}: =?utf-8?b?{encoded}?=\r\n".encode()
    return f"{name}: {value}\r\n".encode("utf-8", "surrogatepass")


@st.composite
def emails(draw: st.DrawFn) -> bytes:
    """A structurally plausible email whose every value is hostile."""
    sender = draw(address)
    headers = [
        _header(draw, "From", f"{draw(header_text)} <{sender}>"),
        _header(draw, "To", draw(address)),
        _header(draw, "Subject", draw(header_text)),
        f"Message-ID: <{draw(local_part)}@{draw(local_part)}>\r\n".encode(),
        _header(draw, "In-Reply-To", draw(header_text)),
        _header(draw, "References", draw(header_text)),
        _header(draw, "Date", draw(st.sampled_from(["Mon, 2 Nov 2026 10:00:00 +0000", "",
                                                     "Thu, 31 Feb 2026 99:99:99 +9999"]))),
        b"MIME-Version: 1.0\r\n",
    ]  # fmt: skip
    text = draw(body_text).encode("utf-8", "surrogatepass")
    kind = draw(st.sampled_from(["plain", "html", "attachment"]))
    if kind == "plain":
        body = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
    elif kind == "html":
        body = b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>" + text + b"</p>"
    else:
        name = draw(filename).encode("utf-8", "surrogatepass")
        body = (
            b'Content-Type: multipart/mixed; boundary="b0undary"\r\n\r\n--b0undary\r\n'
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + b"\r\n--b0undary\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
            b'filename="'
            + name
            + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.b64encode(draw(st.binary(max_size=200)))
            + b"\r\n--b0undary--\r\n"
        )
    return b"".join(headers) + body


def _mutate(raw: bytes, cut: int, junk: bytes) -> bytes:
    """Truncate and splice garbage in: what a broken relay or an attacker sends."""
    point = cut % (len(raw) + 1)
    return raw[:point] + junk + raw[point:]


def _no_nul(parsed: ParsedMessage) -> None:
    fields = [parsed.subject, parsed.from_name, parsed.from_address, parsed.body_text,
              parsed.body_html or "", parsed.new_content_text, parsed.message_id or "",
              parsed.in_reply_to or "", *parsed.references, *parsed.to_addresses,
              *parsed.cc_addresses, *(a.filename for a in parsed.attachments)]  # fmt: skip
    for value in fields:
        assert "\x00" not in value


def _no_path_in_names(parsed: ParsedMessage) -> None:
    for attachment in parsed.attachments:
        assert "/" not in attachment.filename
        assert "\\" not in attachment.filename
        assert not attachment.filename.startswith(".")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_get_a_message_or_a_reason(raw: bytes) -> None:
    result = parse_or_reason(raw)
    if isinstance(result, ParsedMessage):
        _no_nul(result)
        _no_path_in_names(result)
    else:
        assert result  # a reason to store with the quarantined message


@settings(max_examples=300, deadline=None)
@given(emails(), st.integers(min_value=0), st.binary(max_size=40), st.booleans())
def test_hostile_values_in_valid_structure_parse_safely(
    raw: bytes, cut: int, junk: bytes, mutate: bool
) -> None:
    result = parse_or_reason(_mutate(raw, cut, junk) if mutate else raw)
    if isinstance(result, ParsedMessage):
        _no_nul(result)
        _no_path_in_names(result)
        assert "\n" not in result.subject
        assert "\r" not in result.subject
    else:
        assert result


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.one_of(emails(), st.binary(max_size=600)))
async def test_every_message_is_stored_or_quarantined_never_lost(
    session: AsyncSession, factory: Factory, raw: bytes
) -> None:
    """Through the real ingestion into the real database (SQLite or PostgreSQL)."""
    mailbox = await factory.mailbox()
    stored_before = await session.scalar(select(func.count()).select_from(Message))
    quarantined_before = await session.scalar(select(func.count()).select_from(QuarantinedMessage))
    await begin_write(session)
    outcome = await ingest_message(session, mailbox, IncomingMessage(raw=raw))
    await session.commit()
    stored = await session.scalar(select(func.count()).select_from(Message))
    quarantined = await session.scalar(select(func.count()).select_from(QuarantinedMessage))
    assert stored is not None
    assert quarantined is not None
    assert stored_before is not None
    assert quarantined_before is not None
    await session.commit()  # end the read snapshot: the next example's writes must not wait
    if outcome is Outcome.QUARANTINED:
        assert quarantined == quarantined_before + 1
        assert stored == stored_before
    elif outcome in {Outcome.NEW_TICKET, Outcome.THREADED}:
        assert stored == stored_before + 1
    else:
        # A duplicate of an earlier example (same Message-ID): it is already stored.
        assert outcome is Outcome.DUPLICATE
        assert stored + quarantined > 0
