"""The Anthropic backend over real HTTP against the loopback Messages server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from communication_agent.adapters.anthropic_messages import API_VERSION, AnthropicMessagesModel
from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.models.schemas.reasoning import (
    Proposal,
    json_schema,
)
from tests.adapters.contexts import AnthropicKeepingHeaders, RecordingSleep, ticket_context
from tests.llm_servers import AnthropicTestServer, Fault

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5)
MODEL = "claude-sonnet-4-5"


CONTEXT = ticket_context("Hello, order 55012 was charged twice this month. Please fix it.")


def proposal_answer() -> dict[str, Any]:
    return {
        "language": "en",
        "body": "Hello Jana,\n\nwe are checking the double charge for order 55012.\n\nBest regards",
        "citations": ["message:41"],
        "plan": [
            {
                "action": "Compare the charges with the invoices",
                "reason": "Double charges are the usual cause",
                "citations": ["message:41"],
            }
        ],
        "needs_info": [],
    }


@pytest.fixture
def llm() -> Iterator[AnthropicKeepingHeaders]:
    with AnthropicKeepingHeaders() as server:
        yield server


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def model(
    llm: AnthropicTestServer, sleep: RecordingSleep
) -> AsyncIterator[AnthropicMessagesModel]:
    messages = AnthropicMessagesModel(
        api_key=llm.api_key, model=MODEL, base_url=llm.base_url, retry=FAST, sleep=sleep
    )
    yield messages
    await messages.aclose()


async def test_request_has_key_version_system_and_one_forced_tool(
    llm: AnthropicKeepingHeaders, model: AnthropicMessagesModel
) -> None:
    llm.enqueue(json.dumps(proposal_answer()))
    await model.propose(CONTEXT)
    [headers] = llm.headers
    assert headers["x-api-key"] == llm.api_key
    assert headers["anthropic-version"] == API_VERSION
    [body] = llm.requests
    assert body["model"] == MODEL
    assert isinstance(body["max_tokens"], int)
    assert body["max_tokens"] > 0
    assert "<ticket_data>" in body["system"]
    [tool] = body["tools"]
    assert tool["name"] == "record_proposal"
    assert tool["input_schema"] == json_schema(Proposal)
    assert body["tool_choice"] == {"type": "tool", "name": "record_proposal"}
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"].startswith("<ticket_data>\n")


async def test_a_tool_use_answer_validates_into_a_proposal(
    llm: AnthropicTestServer, model: AnthropicMessagesModel
) -> None:
    llm.enqueue(json.dumps(proposal_answer()))
    result = await model.propose(CONTEXT)
    assert result.value is not None
    assert result.value.model_dump() == proposal_answer()
    assert [(c.provider, c.task, c.outcome) for c in result.calls] == [
        ("anthropic", "proposal", "ok")
    ]


async def test_a_text_answer_holding_json_is_accepted(
    llm: AnthropicTestServer, model: AnthropicMessagesModel
) -> None:
    # Not a bare JSON object, so the server answers with a text block instead of tool_use.
    llm.enqueue("Here is the proposal:\n```json\n" + json.dumps(proposal_answer()) + "\n```")
    result = await model.propose(CONTEXT)
    assert result.value is not None
    assert result.value.body == proposal_answer()["body"]
    assert [c.outcome for c in result.calls] == ["ok"]


async def test_overloaded_529_is_retried_then_succeeds(
    llm: AnthropicTestServer, model: AnthropicMessagesModel, sleep: RecordingSleep
) -> None:
    llm.inject(Fault(status=529))
    llm.enqueue(json.dumps(proposal_answer()))
    result = await model.propose(CONTEXT)
    assert result.value is not None
    assert llm.calls == 2
    assert len(sleep.waits) == 1
    assert [c.outcome for c in result.calls] == ["ok"]


async def test_a_400_is_refused_without_retries(
    llm: AnthropicTestServer, model: AnthropicMessagesModel, sleep: RecordingSleep
) -> None:
    llm.inject(Fault(status=400))
    result = await model.propose(CONTEXT)
    assert result.value is None
    assert [c.outcome for c in result.calls] == ["refused"]
    assert result.error is not None
    assert "HTTP 400" in result.error
    assert llm.calls == 1
    assert sleep.waits == []
