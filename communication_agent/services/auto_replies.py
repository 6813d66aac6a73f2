"""Recognising mail that no human wrote: auto-replies, bounces, lists and bulk mail.

Such mail is stored and flagged but never reopens a ticket and never gets a draft, so no mail
loop can arise between us and an autoresponder (RFC 3834 section 2 lists the signals). Each rule
returns the reason it matched, which is stored with the message so operators can see it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message

_BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)([+@])", re.I)

Rule = Callable[[Message, str], str | None]


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, LookupError, IndexError):
        return "invalid"
    return str(value).strip() if value is not None else ""


def _auto_submitted(message: Message, _sender: str) -> str | None:
    value = _header(message, "Auto-Submitted").lower()
    return f"Auto-Submitted: {value}" if value and value != "no" else None


def _precedence(message: Message, _sender: str) -> str | None:
    value = _header(message, "Precedence").lower()
    return f"Precedence: {value}" if value in _BULK_PRECEDENCE else None


def _autoreply_headers(message: Message, _sender: str) -> str | None:
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"):
        if _header(message, name):
            return f"{name} header"
    return None


def _mailing_list(message: Message, _sender: str) -> str | None:
    if _header(message, "List-Id"):
        return "mailing list (List-Id)"
    return "bulk mail (List-Unsubscribe)" if _header(message, "List-Unsubscribe") else None


def _empty_return_path(message: Message, _sender: str) -> str | None:
    present = message.get("Return-Path") is not None
    return (
        "empty Return-Path (a bounce)"
        if present and _header(message, "Return-Path") in {"<>", ""}
        else None
    )


def _daemon_sender(_message: Message, sender: str) -> str | None:
    return f"sent by {sender.split('@', maxsplit=1)[0]}" if _DAEMON.match(sender) else None


def _delivery_report(message: Message, _sender: str) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    return f"delivery report ({message.get_param('report-type') or 'multipart/report'})"


RULES: tuple[Rule, ...] = (
    _auto_submitted,
    _precedence,
    _autoreply_headers,
    _mailing_list,
    _empty_return_path,
    _daemon_sender,
    _delivery_report,
)


def automated_reason(message: Message, from_address: str) -> str | None:
    """Why this message looks machine-sent, or None when it looks human."""
    for rule in RULES:
        reason = rule(message, from_address)
        if reason:
            return reason
    return None
