"""The reply as an RFC 5322 message: threaded, plain text plus simple HTML, injection-proof.

From the mailbox, to the customer, `Re:` once (not `Re: Re:`), `In-Reply-To` and `References`
from the message answered, and a `Message-ID` fixed by the outbox entry, so a retry can look
the message up instead of sending it again. Header values come from email and from operators:
line breaks are removed before they reach a header, so nobody can add a `Bcc:`.
"""

from __future__ import annotations

import html
import re
import secrets
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from communication_agent.models.base import utcnow

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|antw|r)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")


def one_line(value: str) -> str:
    return _LINE_BREAKS.sub(" ", value).strip()


def reply_subject(subject: str) -> str:
    rest = _REPLY_PREFIX.sub("", one_line(subject))
    return f"Re: {rest}" if rest else "Re: your message"


def message_id_for(outbox_id: int, mailbox_address: str) -> str:
    """Unique and unguessable: the random part keeps anyone from planting a message with a
    future id (which a retry's lookup would take for our sent reply)."""
    domain = mailbox_address.rsplit("@", 1)[-1] or "commagent.invalid"
    return f"<commagent.{outbox_id}.{secrets.token_hex(8)}@{one_line(domain)}>"


def reply_message(
    *,
    from_address: str,
    from_name: str,
    to_address: str,
    to_name: str,
    subject: str,
    body: str,
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
) -> bytes:
    message = EmailMessage()
    message["From"] = formataddr((one_line(from_name), one_line(from_address)))
    message["To"] = formataddr((one_line(to_name), one_line(to_address)))
    message["Subject"] = reply_subject(subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = one_line(in_reply_to)
    chain = [one_line(r) for r in references if r] + (
        [one_line(in_reply_to)] if in_reply_to else []
    )
    if chain:
        message["References"] = " ".join(dict.fromkeys(chain))
    message["Auto-Submitted"] = "no"  # a person approved it: not an autoresponder
    text = body.replace("\r\n", "\n").strip() + "\n"
    message.set_content(text)
    paragraphs = "".join(
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n") if p.strip()
    )
    message.add_alternative(
        f"<!DOCTYPE html><html><body>{paragraphs}</body></html>", subtype="html"
    )
    return message.as_bytes()
