"""The offline rules engine: triage and drafts from the packaged TOML rules, no network."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from communication_agent.adapters.offline_model import (
    PACKAGED_RULES,
    OfflineReasoningModel,
    OfflineRules,
)
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.core.config import ConfigurationError, Settings
from communication_agent.models.enums import Priority, TicketState
from communication_agent.models.schemas.reasoning import (
    KnowledgeSnippet,
    TicketContext,
)
from tests.adapters import contexts

MESSAGE_ID = 41
REFUNDS = KnowledgeSnippet(
    id="refunds", title="Refund policy", text="Refunds go back to the original payment method."
)


def ticket_context(
    text: str,
    *,
    subject: str = "Question",
    customer_name: str = "Jana Novak",
    knowledge: list[KnowledgeSnippet] | None = None,
    instruction: str | None = None,
) -> TicketContext:
    return contexts.ticket_context(
        text,
        subject=subject,
        customer_name=customer_name,
        customer_email="customer@example.org",
        message_id=MESSAGE_ID,
        knowledge=knowledge,
        instruction=instruction,
    )


CHARGED_TWICE = ticket_context(
    "Hello, I was charged twice for my subscription this month. Can you check?",
    subject="Invoice",
)
FRENCH_DOUBLE_CHARGE = ticket_context(
    "Bonjour, j'ai été débité deux fois pour mon abonnement ce mois-ci. Merci de vérifier.",
    subject="Facture",
    customer_name="Claire Dubois",
    knowledge=[REFUNDS],
)


def playbook_actions(category: str) -> list[str]:
    playbooks = tomllib.loads((PACKAGED_RULES / "playbooks.toml").read_text(encoding="utf-8"))
    return [step.partition("|")[0].strip() for step in playbooks["playbooks"][category]]


def replies_with(tmp_path: Path, old: str, new: str) -> OfflineRules:
    """The packaged rules with one line of replies.toml replaced, through an override directory."""
    packaged = (PACKAGED_RULES / "replies.toml").read_text(encoding="utf-8")
    assert packaged.count(old) == 1
    (tmp_path / "replies.toml").write_text(packaged.replace(old, new), encoding="utf-8")
    return OfflineRules(tmp_path)


async def test_triage_of_a_german_double_charge_is_high_priority_german_billing() -> None:
    context = ticket_context(
        "Hallo, mir wurde die Rechnung diesen Monat doppelt abgebucht. "
        "Bitte erstatten Sie mir den Betrag. Danke",
        subject="Doppelt abgebucht",
    )
    result = await OfflineReasoningModel().triage(context)
    assert result.value is not None
    triage = result.value
    assert (triage.category, triage.priority, triage.language) == ("billing", Priority.HIGH, "de")
    assert triage.needs_reply is True
    assert triage.suggested_state == TicketState.NEEDS_ACTION


async def test_triage_of_a_thank_you_needs_no_reply_and_is_done() -> None:
    context = ticket_context("Thanks, that worked!", subject="Re: your answer")
    result = await OfflineReasoningModel().triage(context)
    assert result.value is not None
    assert result.value.needs_reply is False
    assert result.value.suggested_state == TicketState.DONE
    assert result.value.confidence >= 0.9


async def test_triage_of_seo_spam_is_low_priority_spam_without_reply() -> None:
    context = ticket_context(
        "Dear sir/madam, we offer SEO services and backlinks to rank your website on the "
        "first page of Google. Click here for our special offer.",
        subject="Rank your website",
    )
    result = await OfflineReasoningModel().triage(context)
    assert result.value is not None
    assert (result.value.category, result.value.priority) == ("spam", Priority.LOW)
    assert result.value.needs_reply is False


async def test_triage_of_an_outage_is_urgent() -> None:
    context = ticket_context(
        "Production is down, all users affected. Nobody can work.", subject="Outage"
    )
    result = await OfflineReasoningModel().triage(context)
    assert result.value is not None
    assert result.value.priority == Priority.URGENT


async def test_call_records_name_the_offline_provider() -> None:
    model = OfflineReasoningModel()
    triage = await model.triage(CHARGED_TWICE)
    proposal = await model.propose(CHARGED_TWICE)
    records = [*triage.calls, *proposal.calls]
    assert [(r.task, r.provider, r.outcome) for r in records] == [
        ("triage", "offline", "ok"),
        ("proposal", "offline", "ok"),
    ]
    assert all(r.tokens_in == r.tokens_out == 0 for r in records)


async def test_proposal_is_in_the_customers_language_addressed_by_first_name() -> None:
    result = await OfflineReasoningModel().propose(FRENCH_DOUBLE_CHARGE)
    assert result.value is not None
    assert result.value.language == "fr"
    assert result.value.body.startswith("Bonjour Claire,\n")
    assert "Dubois" not in result.value.body
    assert "Cordialement" in result.value.body


async def test_proposal_cites_the_latest_message_and_the_snippet() -> None:
    result = await OfflineReasoningModel().propose(FRENCH_DOUBLE_CHARGE)
    assert result.value is not None
    assert result.value.citations == [f"message:{MESSAGE_ID}", "snippet:refunds"]
    assert REFUNDS.title in result.value.body


async def test_proposal_plan_follows_the_categorys_playbook() -> None:
    result = await OfflineReasoningModel().propose(CHARGED_TWICE)
    assert result.value is not None
    assert [step.action for step in result.value.plan] == playbook_actions("billing")
    assert all(step.citations == [f"message:{MESSAGE_ID}"] for step in result.value.plan)


async def test_proposal_validates_and_asks_for_what_is_missing() -> None:
    result = await OfflineReasoningModel().propose(CHARGED_TWICE)
    assert result.value is not None
    assert result.error is None
    assert result.value.needs_info == ["the invoice number or the date and amount of the charge"]
    assert "could you please send us the invoice number" in result.value.body


async def test_instruction_shorter_drops_the_ask_for_info_line() -> None:
    model = OfflineReasoningModel()
    full = await model.propose(CHARGED_TWICE)
    shorter = await model.propose(CHARGED_TWICE.model_copy(update={"instruction": "shorter"}))
    assert full.value is not None
    assert shorter.value is not None
    assert len(shorter.value.body) < len(full.value.body)
    assert "could you please send us" not in shorter.value.body
    assert shorter.value.needs_info == []


async def test_an_override_directory_replaces_the_greeting(tmp_path: Path) -> None:
    rules = replies_with(tmp_path, 'greeting = "Hello {name},"', 'greeting = "Good day {name},"')
    result = await OfflineReasoningModel(rules).propose(CHARGED_TWICE)
    assert result.value is not None
    assert result.value.body.startswith("Good day Jana,\n")


async def test_a_template_stating_a_number_is_rejected_by_grounding(tmp_path: Path) -> None:
    rules = replies_with(
        tmp_path,
        "will get back to you with a clear answer.",
        "will get back to you within 24 hours.",
    )
    result = await OfflineReasoningModel(rules).propose(CHARGED_TWICE)
    assert result.value is None
    assert result.error is not None
    assert "numbers that are not in the context (24)" in result.error
    assert [(r.provider, r.outcome) for r in result.calls] == [("offline", "invalid_output")]


async def test_a_greeting_using_the_documented_subject_placeholder(tmp_path: Path) -> None:
    rules = replies_with(
        tmp_path, 'greeting = "Hello {name},"', 'greeting = "Hello {name}, about {subject}:"'
    )
    result = await OfflineReasoningModel(rules).propose(CHARGED_TWICE)
    assert result.value is not None
    assert result.value.body.startswith("Hello Jana, about Invoice:\n")


def test_the_factory_picks_the_offline_engine_by_default() -> None:
    model = reasoning_model(Settings(_env_file=None))
    assert isinstance(model, OfflineReasoningModel)
    assert (model.provider, model.model) == ("offline", "rules")


def test_the_factory_names_the_variable_of_a_broken_rules_directory(tmp_path: Path) -> None:
    (tmp_path / "signals.toml").write_text("[languages\n", encoding="utf-8")
    settings = Settings(_env_file=None, offline_rules_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="COMMAGENT_OFFLINE_RULES_DIR"):
        reasoning_model(settings)


def test_a_rules_pattern_that_does_not_compile_stops_start_up(tmp_path: Path) -> None:
    broken = (PACKAGED_RULES / "categories.toml").read_text(encoding="utf-8")
    broken = broken.replace("patterns = []", 'patterns = ["(unclosed"]', 1)
    (tmp_path / "categories.toml").write_text(broken, encoding="utf-8")
    settings = Settings(_env_file=None, offline_rules_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="does not compile"):
        reasoning_model(settings)


@pytest.mark.parametrize(
    ("display_name", "greeted"),
    [
        ('<img src=x onerror="alert(1)"> Eve', None),
        ("billing@example.org", None),
        ("12345", None),
        ("O'Neill Ryan", "O'Neill"),
        ("Jean-Luc Picard", "Jean-Luc"),
        ("Zoë Brandt", "Zoë"),
    ],
)
async def test_the_greeting_uses_a_display_name_only_when_it_looks_like_a_name(
    display_name: str, greeted: str | None
) -> None:
    context = ticket_context(
        "Hello, I was charged twice this month. Can you check?",
        subject="Invoice",
        customer_name=display_name,
    )
    result = await OfflineReasoningModel().propose(context)
    assert result.value is not None
    first_line = result.value.body.splitlines()[0]
    if greeted is None:
        assert display_name.split(maxsplit=1)[0] not in first_line
        assert "<" not in result.value.body
    else:
        assert greeted in first_line
