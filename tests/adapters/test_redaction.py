"""Masking personal data before it reaches a remote model, and restoring it in the draft."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.adapters.openai_chat import OpenAIChatModel
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.adapters.redaction import RedactingModel, Redactor
from communication_agent.adapters.remote_model import token_count
from communication_agent.core.config import Settings
from communication_agent.models.schemas.reasoning import TicketContext
from tests.adapters import contexts
from tests.llm_servers import OpenAITestServer

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=5)
EMAIL = "jana.novak@example.org"
PHONE = "+49 30 5557788"
CARD = "4111 1111 1111 1111"  # passes the Luhn check
NOT_A_CARD = "4111 1111 1111 1112"  # 16 digits, fails it


def ticket_context(text: str, *, ticket_id: int = 7) -> TicketContext:
    return contexts.ticket_context(text, customer_email=EMAIL, ticket_id=ticket_id, message_id=42)


CONTEXT = ticket_context(
    f"Hello, my card {CARD} was charged twice. Please call me back on {PHONE} or write to {EMAIL}."
)


def proposal_answer(body: str) -> str:
    return json.dumps(
        {
            "language": "en",
            "body": body,
            "citations": ["message:42"],
            "plan": [
                {
                    "action": "Call the customer on [PHONE_1]",
                    "reason": "They asked for a call back",
                    "citations": ["message:42"],
                }
            ],
            "needs_info": [],
        }
    )


@pytest.fixture
def llm() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


@pytest.fixture
async def redacting(llm: OpenAITestServer) -> AsyncIterator[RedactingModel]:
    model = RedactingModel(
        OpenAIChatModel(base_url=llm.base_url, api_key=llm.api_key, model="gpt-4o-mini", retry=FAST)
    )
    yield model
    await model.aclose()


def test_masks_email_addresses() -> None:
    assert Redactor().mask(f"Write to {EMAIL} please") == "Write to [EMAIL_1] please"


def test_masks_phone_numbers() -> None:
    assert Redactor().mask(f"Call {PHONE} today") == "Call [PHONE_1] today"


def test_masks_luhn_valid_card_numbers_only() -> None:
    redactor = Redactor()
    assert redactor.mask(f"Card {CARD}") == "Card [CARD_1]"
    assert redactor.mask(f"Reference {NOT_A_CARD}") == f"Reference {NOT_A_CARD}"


def test_the_same_value_gets_the_same_placeholder() -> None:
    redactor = Redactor()
    masked = redactor.mask(f"{EMAIL}, other@example.com, {EMAIL}")
    assert masked == "[EMAIL_1], [EMAIL_2], [EMAIL_1]"
    assert redactor.mask(f"Again: {EMAIL}") == "Again: [EMAIL_1]"


def test_restore_puts_the_values_back() -> None:
    redactor = Redactor()
    text = f"Card {CARD}, phone {PHONE}, mail {EMAIL}."
    masked = redactor.mask(text)
    assert masked == "Card [CARD_1], phone [PHONE_1], mail [EMAIL_1]."
    assert redactor.restore(masked) == text


async def test_the_server_never_sees_the_customers_data_and_the_draft_has_it_back(
    llm: OpenAITestServer, redacting: RedactingModel
) -> None:
    llm.enqueue(proposal_answer("Hello Jana,\n\nwe will call you back on [PHONE_1] today."))
    result = await redacting.propose(CONTEXT)
    assert result.value is not None, result.error
    sent = json.dumps(llm.requests, ensure_ascii=False)
    for private in (EMAIL, PHONE, CARD, "5557788"):
        assert private not in sent
    assert "[PHONE_1]" in sent
    assert result.value.body == f"Hello Jana,\n\nwe will call you back on {PHONE} today."
    assert result.value.plan[0].action == f"Call the customer on {PHONE}"


async def test_redaction_does_not_let_a_draft_invent_numbers(
    llm: OpenAITestServer, redacting: RedactingModel
) -> None:
    context = ticket_context("Hello, I was charged twice. Please fix it.", ticket_id=7)
    invented = proposal_answer("Hello Jana,\n\nwe will refund you within 1 day.")
    plain = OpenAIChatModel(
        base_url=llm.base_url, api_key=llm.api_key, model="gpt-4o-mini", retry=FAST, attempts=1
    )
    try:
        llm.enqueue(invented)
        unredacted = await plain.propose(context)
    finally:
        await plain.aclose()
    assert unredacted.value is None  # without redaction the invented "1" is caught

    for _ in range(3):
        llm.enqueue(invented)
    redacted = await redacting.propose(context)
    assert redacted.value is None


async def test_the_factory_wraps_the_backend_when_redaction_is_on(
    llm: OpenAITestServer,
) -> None:
    settings = Settings(
        _env_file=None,
        llm_provider="openai",
        llm_base_url=llm.base_url,
        llm_api_key=SecretStr(llm.api_key),
        llm_model="gpt-4o-mini",
        llm_redact=True,
    )
    model = reasoning_model(settings, retry=FAST)
    try:
        assert isinstance(model, RedactingModel)
        assert isinstance(model.inner, OpenAIChatModel)
        assert (model.provider, model.model) == ("openai", "gpt-4o-mini")
    finally:
        await model.aclose()


def test_dates_order_numbers_and_references_are_not_taken_for_phones() -> None:
    redactor = Redactor()
    text = "Order 123456789 on 2024-03-15 (15.03.2024), invoice INV-2024-000123."
    assert redactor.mask(text) == text
    assert redactor.mask("call (030) 555-7788 or 030 555 77 88") == "call [PHONE_1] or [PHONE_2]"


def test_token_counts_survive_odd_usage_values() -> None:
    assert [token_count(v) for v in (12, "7", None, "n/a", [1], True, -3, 2.9)] == [
        12, 7, 0, 0, 0, 0, 0, 2,
    ]  # fmt: skip
