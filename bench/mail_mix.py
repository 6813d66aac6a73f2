"""A seeded, realistic mix of support mail for benchmarks: sizes, HTML, attachments, threads."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

WORDS = [
    "order",
    "invoice",
    "refund",
    "account",
    "password",
    "login",
    "error",
    "billing",
    "shipping",
    "delivery",
    "package",
    "subscription",
    "cancel",
    "upgrade",
    "payment",
    "card",
    "charge",
    "twice",
    "missing",
    "broken",
    "screen",
    "app",
    "update",
    "please",
    "help",
    "thanks",
    "urgent",
    "question",
    "support",
    "ticket",
    "number",
    "customer",
    "service",
    "week",
]


def _text(rng: random.Random, words: int) -> str:
    lines = []
    for _ in range(max(1, words // 12)):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
    return "\n".join(lines)


def messages(n: int, seed: int = 7) -> Iterator[tuple[bytes, str, tuple[str, ...]]]:
    """Yield (raw, thread id, labels): 60% plain, 25% HTML, 10% with an attachment, 5%
    auto-replies; about 40% are replies in an existing thread."""
    rng = random.Random(seed)  # noqa: S311  (benchmark data, not secrets)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    threads: list[tuple[str, str, str]] = []  # (thread id, root message id, subject)
    for i in range(n):
        message = EmailMessage()
        customer = f"customer{rng.randrange(n // 3 + 1)}@example.org"
        message["From"] = f"Customer {i} <{customer}>"
        message["To"] = "support@company.example"
        message["Date"] = format_datetime(start + timedelta(minutes=i))
        message["Message-ID"] = f"<bench-{i}@mail.example.org>"
        if threads and rng.random() < 0.4:
            thread_id, root, subject = rng.choice(threads)
            message["Subject"] = f"Re: {subject}"
            message["In-Reply-To"] = root
            message["References"] = root
        else:
            thread_id, subject = (
                f"t{i:08x}",
                f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} #{i}",
            )
            message["Subject"] = subject
            threads.append((thread_id, f"<bench-{i}@mail.example.org>", subject))
        kind = rng.random()
        body = _text(rng, rng.randint(30, 400))
        if kind < 0.05:
            message["Auto-Submitted"] = "auto-replied"
            message.set_content("I am out of the office until Monday.")
        else:
            message.set_content(
                body + "\n\nOn Monday, Support wrote:\n> " + _text(rng, 40).replace("\n", "\n> ")
            )
            if kind < 0.40:
                html = (
                    "<html><body>"
                    + "".join(f"<p>{line}</p>" for line in body.splitlines())
                    + "</body></html>"
                )
                message.add_alternative(html, subtype="html")
            if kind > 0.85:
                payload = rng.randbytes(rng.randint(20_000, 120_000))
                message.add_attachment(
                    payload, maintype="application", subtype="pdf", filename=f"scan-{i}.pdf"
                )
        yield message.as_bytes(), thread_id, ("INBOX",)


def questions(n: int, seed: int = 11) -> Iterator[tuple[bytes, str, tuple[str, ...]]]:
    """Yield (raw, thread id, labels): n plain questions, each from its own customer in its own
    thread, so a sync makes n tickets that each wait for one reply (the sending benchmark)."""
    rng = random.Random(seed)  # noqa: S311  (benchmark data, not secrets)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for i in range(n):
        message = EmailMessage()
        message["From"] = f"Customer {i} <customer{i}@example.org>"
        message["To"] = "support@company.example"
        message["Date"] = format_datetime(start + timedelta(minutes=i))
        message["Message-ID"] = f"<question-{i}@mail.example.org>"
        message["Subject"] = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} #{i}"
        message.set_content(_text(rng, rng.randint(30, 200)))
        yield message.as_bytes(), f"q{i:08x}", ("INBOX",)
