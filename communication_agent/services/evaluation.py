"""Measuring the reasoning backend before a change ships: `commagent eval triage|replay`.

- `triage`: the configured backend over a labelled JSON Lines file (`from`, `subject`, `body`,
  and the expected `category`, `priority`, `needs_reply`); accuracy per field and a category
  confusion table. A failed triage counts as wrong.
- `replay`: drafting re-run over tickets that already have a reply an operator sent, each with
  the conversation as it was before that reply; per category, how far the new drafts are from
  what was sent (1 - difflib's similarity ratio: 0 is identical, 1 shares nothing).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.models import Message, Ticket
from communication_agent.models.enums import Direction
from communication_agent.models.schemas.reasoning import ContextMessage, TicketContext
from communication_agent.services.assistant import AssistantConfig, prepare
from communication_agent.services.errors import InvalidInputError
from communication_agent.services.mail_parsing import new_content

FIELDS = ("category", "priority", "needs_reply")


@dataclass(frozen=True)
class LabelledEmail:
    sender: str
    subject: str
    body: str
    expected: dict[str, Any]


def read_labelled(path: Path) -> list[LabelledEmail]:
    """Read and check the whole file first, so a typo on line 140 fails before any model call."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    emails = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            emails.append(
                LabelledEmail(
                    sender=str(item["from"]),
                    subject=str(item.get("subject", "")),
                    body=str(item["body"]),
                    expected={name: item[name] for name in FIELDS},
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"{path}:{number}: expected a JSON object with from, subject, body, "
                f"category, priority and needs_reply ({type(exc).__name__}: {exc})"
            ) from exc
    if not emails:
        raise InvalidInputError(f"{path} holds no labelled emails")
    return emails


@dataclass
class TriageReport:
    n: int = 0
    correct: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)  # (expected, got)

    def accuracy(self, name: str) -> float:
        return round(self.correct[name] / self.n, 4) if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, **{f"{name}_accuracy": self.accuracy(name) for name in FIELDS}}


def email_context(index: int, email: LabelledEmail, categories: list[str]) -> TicketContext:
    name, address = parseaddr(email.sender)
    return TicketContext(
        ticket_id=index,
        subject=email.subject,
        customer_name=name,
        customer_email=address or email.sender,
        mailbox_address="support@eval.invalid",
        messages=[
            ContextMessage(
                id=index,
                direction="inbound",
                from_name=name,
                from_address=address,
                sent_at=None,
                subject=email.subject,
                text=new_content(email.body),  # as ingestion would give it: quotes stripped
            )
        ],
        categories=categories,
    )


async def evaluate_triage(
    model: ReasoningModel, emails: list[LabelledEmail], categories: list[str]
) -> TriageReport:
    report = TriageReport()
    for index, email in enumerate(emails, start=1):
        report.n += 1
        answer = await model.triage(email_context(index, email, categories))
        got: dict[str, Any] = {}
        if answer.value is None:
            report.failures += 1
        else:
            got = {
                "category": answer.value.category,
                "priority": answer.value.priority.value,
                "needs_reply": answer.value.needs_reply,
            }
        for name in FIELDS:
            if got.get(name) == email.expected[name]:
                report.correct[name] += 1
        report.confusion[(str(email.expected["category"]), str(got.get("category", "failed")))] += 1
    return report


@dataclass
class ReplayReport:
    distances: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        every = [d for values in self.distances.values() for d in values]
        return {
            "n": len(every),
            "failures": self.failures,
            "mean_distance": round(sum(every) / len(every), 4) if every else None,
            "by_category": {
                category: {"n": len(values), "mean_distance": round(sum(values) / len(values), 4)}
                for category, values in sorted(self.distances.items())
            },
        }


def distance(a: str, b: str) -> float:
    return round(1 - SequenceMatcher(None, a.strip(), b.strip(), autojunk=False).ratio(), 4)


async def replay_drafts(
    session: AsyncSession,
    model: ReasoningModel,
    config: AssistantConfig,
    *,
    limit: int,
) -> ReplayReport:
    """Re-draft the first operator reply of up to `limit` tickets (newest tickets first)."""
    report = ReplayReport()
    replies = await session.execute(
        select(Message.ticket_id, Message.id, Message.body_text, Ticket.category)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(Message.direction == Direction.OUTBOUND.value)
        .order_by(Message.ticket_id.desc(), Message.id)
    )
    seen: set[int] = set()
    for ticket_id, reply_id, reply_text, category in replies.all():
        if ticket_id in seen or len(seen) >= limit:
            continue
        seen.add(ticket_id)
        prepared = await prepare(session, ticket_id, config, before_message_id=reply_id)
        if prepared.latest_message_id is None:
            continue  # the reply did not answer a customer message
        answer = await model.propose(prepared.context)
        if answer.value is None:
            report.failures += 1
            continue
        report.distances[category or "uncategorised"].append(
            distance(answer.value.body, reply_text)
        )
    return report
