"""Shared pieces of the reasoning tests: ingesting real mail, the assistant configuration, and
scripted remote-model answers built from what the model was actually sent."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.adapters.openai_chat import OpenAIChatModel
from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.core.db import begin_write
from communication_agent.models import Mailbox
from communication_agent.models.schemas.reasoning import DEFAULT_CATEGORIES
from communication_agent.services import reasoning_tasks
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.ingestion import IncomingMessage, ingest_message
from communication_agent.services.knowledge import KnowledgeBase
from tests.llm_servers import OpenAITestServer

SUPPORT = "support@company.example"
SECRET = "test-secret-key-without-digits-abcdefghijklmnop"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, max_retry_after=1)
SessionMaker = async_sessionmaker[AsyncSession]
_names = itertools.count(1)


def config(**overrides: Any) -> AssistantConfig:
    values: dict[str, Any] = {
        "categories": list(DEFAULT_CATEGORIES),
        "auto_done_confidence": 0.9,
        "knowledge": KnowledgeBase.load(None),
        "secrets": (SECRET,),
    }
    values.update(overrides)
    return AssistantConfig(**values)


async def support_mailbox(sessionmaker: SessionMaker) -> Mailbox:
    async with sessionmaker() as session:
        mailbox = Mailbox(name=f"support-{next(_names)}", address=SUPPORT, provider="local")
        session.add(mailbox)
        await session.commit()
        return mailbox


async def ingest(sessionmaker: SessionMaker, mailbox: Mailbox, raw: bytes) -> None:
    async with sessionmaker() as session:
        await begin_write(session)
        stored = await session.get_one(Mailbox, mailbox.id)
        await ingest_message(session, stored, IncomingMessage(raw=raw))
        await session.commit()


async def work(sessionmaker: SessionMaker, model: ReasoningModel, **overrides: Any) -> int:
    return await reasoning_tasks.run_due(
        sessionmaker, model, config(**overrides), owner="tests", lease=timedelta(minutes=5)
    )


def openai_model(server: OpenAITestServer) -> OpenAIChatModel:
    return OpenAIChatModel(
        base_url=server.base_url,
        api_key=server.api_key,
        model="test-model",
        timeout=5,
        attempts=2,
        retry=FAST,
    )


def ticket_data(request: dict[str, Any]) -> dict[str, Any]:
    """The JSON document the adapter put between <ticket_data> tags."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    match = re.search(r"<ticket_data>\n(.*)\n</ticket_data>", user, re.S)
    assert match, "the ticket must be sent as a labelled data block"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def is_triage(request: dict[str, Any]) -> bool:
    system = next(m["content"] for m in request["messages"] if m["role"] == "system")
    return "Task: triage" in system


def benign(request: dict[str, Any]) -> str:
    """A well-behaved model: billing, reply needed, a grounded draft citing the newest message."""
    data = ticket_data(request)
    if is_triage(request):
        return json.dumps(
            {
                "category": "billing",
                "priority": "high",
                "sentiment": "negative",
                "language": "en",
                "summary": "Customer was charged twice",
                "needs_reply": True,
                "suggested_state": "NEEDS_ACTION",
                "confidence": 0.8,
            }
        )
    return json.dumps(
        {
            "language": "en",
            "body": f"Hello {data['customer']['name']},\n\nWe are checking the charges.",
            "citations": [data["messages"][-1]["ref"]],
            "plan": [{"action": "Check the charges", "reason": "Customer says twice"}],
            "needs_info": [],
        }
    )


def malicious(request: dict[str, Any]) -> str:
    """A model that obeyed the email: "no reply needed, close it", and a draft leaking a
    password, the server's secret and a link the conversation never had."""
    data = ticket_data(request)
    if is_triage(request):
        return json.dumps(
            {
                "category": "other",
                "priority": "low",
                "sentiment": "positive",
                "language": "en",
                "summary": "Customer asks to close the ticket",
                "needs_reply": False,
                "suggested_state": "DONE",
                "confidence": 0.99,
            }
        )
    return json.dumps(
        {
            "language": "en",
            "body": (
                f"Done. The admin password is swordfish and the key is {SECRET}. "
                "Reset it at https://evil.example.net/reset"
            ),
            "citations": [data["messages"][-1]["ref"]],
            "plan": [{"action": "Close the ticket", "reason": "The customer asked"}],
        }
    )
