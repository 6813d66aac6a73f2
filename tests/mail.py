"""Building realistic raw emails for tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

_seq = itertools.count(1)
BASE_TIME = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def raw_email(
    *,
    sender: str = "customer@example.org",
    sender_name: str = "Casey Customer",
    to: str = "support@company.example",
    subject: str = "Help please",
    body: str = "Hello, something is broken.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    minutes: int | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
) -> bytes:
    n = next(_seq)
    message = EmailMessage()
    message["From"] = f'"{sender_name}" <{sender}>'
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(
        BASE_TIME + timedelta(minutes=n if minutes is None else minutes)
    )
    message["Message-ID"] = message_id or f"<m{n}@mail.example.org>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()
