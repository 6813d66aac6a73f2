"""What a model must give back, validated against the ticket it was given (no model involved)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from communication_agent.models.schemas.reasoning import (
    KnowledgeSnippet,
    Proposal,
    TicketContext,
    Triage,
    json_schema,
)
from tests.adapters import contexts


def ticket_context(text: str, *, knowledge: list[KnowledgeSnippet] | None = None) -> TicketContext:
    return contexts.ticket_context(text, knowledge=knowledge, categories=["billing", "other"])


def triage_answer(**changes: Any) -> str:
    answer = {
        "category": "billing",
        "priority": "high",
        "sentiment": "negative",
        "language": "en",
        "summary": "Customer was charged twice for the subscription",
        "needs_reply": True,
        "suggested_state": "NEEDS_ACTION",
        "confidence": 0.8,
    }
    return json.dumps(answer | changes)


def proposal_answer(body: str, *, citations: list[str] | None = None) -> str:
    answer = {
        "language": "en",
        "body": body,
        "citations": ["message:41"] if citations is None else citations,
        "plan": [
            {
                "action": "Compare the charges with the invoices",
                "reason": "Double charges are the usual cause",
                "citations": ["message:41"],
            }
        ],
        "needs_info": [],
    }
    return json.dumps(answer)


CONTEXT = ticket_context("Hello, my subscription was charged twice this month. Please help.")


def test_triage_accepts_a_category_of_the_context() -> None:
    triage = Triage.model_validate_json(triage_answer(), context={"ticket": CONTEXT})
    assert triage.category == "billing"


def test_triage_rejects_a_category_outside_the_context_list() -> None:
    # "bug" is a default category, but this context only allows billing and other.
    with pytest.raises(ValidationError, match="category must be one of billing, other"):
        Triage.model_validate_json(triage_answer(category="bug"), context={"ticket": CONTEXT})


def test_triage_rejects_a_multi_line_summary() -> None:
    answer = triage_answer(summary="Charged twice.\nAlso wants a discount.")
    with pytest.raises(ValidationError, match="the summary must be one line"):
        Triage.model_validate_json(answer, context={"ticket": CONTEXT})


def test_proposal_rejects_a_citation_not_in_the_context() -> None:
    answer = proposal_answer("Hello Jana, we are checking the charges.", citations=["message:99"])
    with pytest.raises(ValidationError, match="citations not in the context: message:99"):
        Proposal.model_validate_json(answer, context={"ticket": CONTEXT})


def test_proposal_rejects_a_malformed_citation() -> None:
    answer = proposal_answer("Hello Jana, we are checking the charges.", citations=["the email"])
    with pytest.raises(ValidationError, match="citations must look like message:<id>"):
        Proposal.model_validate_json(answer, context={"ticket": CONTEXT})


@pytest.mark.parametrize(
    ("body", "invented"),
    [
        ("Hello Jana, your order 55012 has been refunded.", "55012"),
        ("Hello Jana, we refunded the duplicate charge of €49.95.", "49, 95"),
        ("Hello Jana, you will hear from us within 24 hours.", "24"),
    ],
    ids=["order-number", "price", "deadline"],
)
def test_proposal_rejects_a_body_with_a_number_absent_from_the_context(
    body: str, invented: str
) -> None:
    with pytest.raises(
        ValidationError, match=rf"numbers that are not in the context \({invented}\)"
    ):
        Proposal.model_validate_json(proposal_answer(body), context={"ticket": CONTEXT})


def test_proposal_accepts_numbers_from_a_message_and_a_knowledge_snippet() -> None:
    snippet = KnowledgeSnippet(
        id="refunds", title="Refund policy", text="Refunds reach the card within 14 days."
    )
    context = ticket_context(
        "Hello, order 55012 was charged twice, €49.95 each time.", knowledge=[snippet]
    )
    body = "Hello Jana, we refunded €49.95 for order 55012; it reaches your card within 14 days."
    answer = proposal_answer(body, citations=["message:41", "snippet:refunds"])
    proposal = Proposal.model_validate_json(answer, context={"ticket": context})
    assert proposal.body == body
    assert proposal.citations == ["message:41", "snippet:refunds"]


def _string_titles(node: object) -> list[object]:
    """Every `title` annotation (a string under the key "title") anywhere in a schema."""
    if isinstance(node, dict):
        own = [node["title"]] if isinstance(node.get("title"), str) else []
        return own + [t for value in node.values() for t in _string_titles(value)]
    if isinstance(node, list):
        return [t for value in node for t in _string_titles(value)]
    return []


def test_json_schema_has_no_title_annotations_but_keeps_the_properties() -> None:
    proposal = json_schema(Proposal)
    assert _string_titles(proposal) == []
    assert set(proposal["properties"]) == {"language", "body", "citations", "plan", "needs_info"}
    assert set(proposal["$defs"]["PlanStep"]["properties"]) == {"action", "reason", "citations"}
    assert proposal["required"] == ["language", "body", "citations", "plan"]

    # A property that is itself called "title" is data, not an annotation: it stays.
    snippet = json_schema(KnowledgeSnippet)
    assert _string_titles(snippet) == []
    assert snippet["properties"]["title"] == {"type": "string"}


def test_the_ticket_number_counts_only_as_a_ticket_reference() -> None:
    """Ticket 7: "#7" may be quoted, a bare 7 ("within 7 days") is an invented number."""
    with pytest.raises(ValidationError, match=r"numbers that are not in the context \(7\)"):
        Proposal.model_validate_json(
            proposal_answer("We will refund you within 7 days."), context={"ticket": CONTEXT}
        )
    ok = Proposal.model_validate_json(
        proposal_answer("Your ticket #7 is with our billing team."), context={"ticket": CONTEXT}
    )
    assert "#7" in ok.body


def test_plan_steps_may_not_invent_numbers_either() -> None:
    answer = json.loads(proposal_answer("We are looking into it."))
    answer["plan"] = [{"action": "Refund EUR 999", "reason": "Goodwill", "citations": []}]
    with pytest.raises(ValidationError, match=r"plan step 1 mentions numbers .*\(999\)"):
        Proposal.model_validate_json(json.dumps(answer), context={"ticket": CONTEXT})


def test_a_draft_must_cite_something() -> None:
    with pytest.raises(ValidationError, match="citations"):
        Proposal.model_validate_json(
            proposal_answer("We are looking into it.", citations=[]), context={"ticket": CONTEXT}
        )
