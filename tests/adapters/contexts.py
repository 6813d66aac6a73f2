"""Pieces the reasoning adapter tests share: a ticket context, a sleep that only records, and
loopback model servers that also keep the headers they were sent."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from communication_agent.models.schemas.reasoning import (
    ContextMessage,
    KnowledgeSnippet,
    TicketContext,
)
from tests.llm_servers import AnthropicTestServer, OpenAITestServer


def ticket_context(
    text: str = "My subscription was charged twice this month.",
    *,
    subject: str = "Charged twice",
    customer_name: str = "Jana Novak",
    customer_email: str = "jana@example.org",
    ticket_id: int = 7,
    message_id: int = 41,
    knowledge: list[KnowledgeSnippet] | None = None,
    instruction: str | None = None,
    categories: list[str] | None = None,
) -> TicketContext:
    return TicketContext(
        ticket_id=ticket_id,
        subject=subject,
        customer_name=customer_name,
        customer_email=customer_email,
        mailbox_address="support@company.example",
        messages=[
            ContextMessage(
                id=message_id,
                direction="inbound",
                from_name=customer_name,
                from_address=customer_email,
                sent_at=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
                subject=subject,
                text=text,
            )
        ],
        knowledge=knowledge or [],
        instruction=instruction,
        **({"categories": categories} if categories else {}),
    )


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class _KeepsHeaders:
    """Mixed into a loopback model server: also keep the headers of every request it
    authenticates (the servers record bodies only)."""

    headers: list[dict[str, str]]

    def unauthorised(self, request: Request) -> Response | None:
        self.headers.append(dict(request.headers))
        answer: Response | None = super().unauthorised(request)  # type: ignore[misc]
        return answer


class OpenAIKeepingHeaders(_KeepsHeaders, OpenAITestServer):
    headers: list[dict[str, str]] = []  # noqa: RUF012 (replaced per instance in __enter__)

    def __enter__(self) -> OpenAIKeepingHeaders:
        self.headers = []
        super().__enter__()
        return self


class AnthropicKeepingHeaders(_KeepsHeaders, AnthropicTestServer):
    headers: list[dict[str, str]] = []  # noqa: RUF012 (replaced per instance in __enter__)

    def __enter__(self) -> AnthropicKeepingHeaders:
        self.headers = []
        super().__enter__()
        return self
