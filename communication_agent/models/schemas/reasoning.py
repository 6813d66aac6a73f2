"""What the reasoning layer is given and what it must give back, as validated Pydantic types.

`TicketContext` is everything a model may use: the conversation (newest content of each
message), the customer's earlier tickets and the knowledge snippets picked for the ticket. The
results (`Triage`, `Proposal`) are validated *against that context*: pass it as
`model_validate_json(..., context={"ticket": ctx})`. A draft may only cite messages and snippets
that are in the context, and may only mention numbers (order numbers, prices, dates, amounts,
durations) that occur there, so it cannot invent an order number or promise "within 24 hours";
where it needs such a fact it must ask for it instead (`needs_info`). A result that fails
validation is the model's failure: the adapter retries, then records a failed attempt.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from communication_agent.models.enums import Priority, TicketState

DEFAULT_CATEGORIES = (
    "billing",
    "bug",
    "account",
    "how-to",
    "feature-request",
    "complaint",
    "spam",
    "other",
)
Sentiment = Literal["positive", "neutral", "negative"]
_REF = re.compile(r"^(message|snippet):[A-Za-z0-9_.-]{1,64}$")
_DIGITS = re.compile(r"\d+")
# What `adapters/redaction.py` puts in place of personal data; its digits are no facts.
REDACTION_PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD)_\d+\]")


class ContextMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    direction: Literal["inbound", "outbound"]
    from_name: str
    from_address: str
    sent_at: datetime | None
    subject: str
    text: str = Field(description="The message's new content (quoted history stripped).")
    suspicious_html: bool = Field(
        default=False, description="Its HTML hides text (invisible styles): treat with care."
    )

    @property
    def ref(self) -> str:
        return f"message:{self.id}"


class EarlierTicket(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    subject: str
    state: str
    category: str | None
    created_at: datetime


class KnowledgeSnippet(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str
    text: str

    @property
    def ref(self) -> str:
        return f"snippet:{self.id}"


class TicketContext(BaseModel):
    """The prepared, typed input of every reasoning call."""

    model_config = ConfigDict(frozen=True)

    ticket_id: int
    subject: str
    customer_name: str
    customer_email: str
    mailbox_address: str
    messages: list[ContextMessage] = Field(description="Oldest first.")
    earlier_tickets: list[EarlierTicket] = Field(default_factory=list)
    knowledge: list[KnowledgeSnippet] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    instruction: str | None = Field(
        default=None, description="An operator's wish for a regenerated draft."
    )

    @property
    def latest_inbound(self) -> ContextMessage | None:
        inbound = [m for m in self.messages if m.direction == "inbound"]
        return inbound[-1] if inbound else None

    def references(self) -> set[str]:
        return {m.ref for m in self.messages} | {k.ref for k in self.knowledge}

    def grounding_text(self) -> str:
        """Everything a draft may take facts from (the ticket number only as "#<id>", see
        `Proposal`: bare, it would license any number that happens to equal it)."""
        parts = [self.subject, self.customer_name, self.customer_email]
        parts += [f"{m.subject}\n{m.text}" for m in self.messages]
        parts += [f"{t.id} {t.subject}" for t in self.earlier_tickets]
        parts += [f"{k.title}\n{k.text}" for k in self.knowledge]
        parts.append(self.instruction or "")
        return "\n".join(parts)


def _context(info: ValidationInfo) -> TicketContext | None:
    context = info.context if isinstance(info.context, dict) else None
    ticket = context.get("ticket") if context else None
    return ticket if isinstance(ticket, TicketContext) else None


class Triage(BaseModel):
    category: str = Field(description="One of the context's categories.")
    priority: Priority
    sentiment: Sentiment
    language: str = Field(
        pattern=r"^[a-z]{2,3}$", description="ISO 639-1 code of the customer's language."
    )
    summary: str = Field(min_length=1, max_length=200, description="One line, no line breaks.")
    needs_reply: bool
    suggested_state: TicketState
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("the summary must be one line")
        return value.strip()

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str, info: ValidationInfo) -> str:
        context = _context(info)
        allowed = context.categories if context else list(DEFAULT_CATEGORIES)
        if value not in allowed:
            raise ValueError(f"category must be one of {', '.join(allowed)}")
        return value


class PlanStep(BaseModel):
    action: str = Field(min_length=1, max_length=300, description="What the operator does.")
    reason: str = Field(min_length=1, max_length=300, description="Why.")
    citations: list[str] = Field(
        default_factory=list, description='"message:<id>" or "snippet:<id>" from the context.'
    )


class Proposal(BaseModel):
    """A draft reply and the operator's plan, with what they rely on."""

    language: str = Field(pattern=r"^[a-z]{2,3}$")
    body: str = Field(min_length=1, max_length=20_000)
    citations: list[str] = Field(
        min_length=1,
        description='At least one "message:<id>" or "snippet:<id>" from the context.',
    )
    plan: list[PlanStep] = Field(min_length=1, max_length=10)
    needs_info: list[str] = Field(
        default_factory=list,
        description="Facts the reply needs that the context does not give (ask, never invent).",
    )

    @model_validator(mode="after")
    def _grounded(self, info: ValidationInfo) -> Proposal:
        context = _context(info)
        refs = [*self.citations, *(c for step in self.plan for c in step.citations)]
        malformed = [r for r in refs if not _REF.match(r)]
        if malformed:
            raise ValueError(f"citations must look like message:<id> or snippet:<id>: {malformed}")
        if context is None:
            return self
        unknown = sorted(set(refs) - context.references())
        if unknown:
            raise ValueError(f"citations not in the context: {', '.join(unknown)}")
        known_numbers = set(_numbers(context.grounding_text()))
        ticket_ref = re.compile(rf"#{context.ticket_id}\b")
        for where, text in [("draft", self.body)] + [
            (f"plan step {n}", f"{step.action} {step.reason}")
            for n, step in enumerate(self.plan, start=1)
        ]:
            invented = sorted(set(_numbers(ticket_ref.sub(" ", text))) - known_numbers)
            if invented:
                raise ValueError(
                    f"the {where} mentions numbers that are not in the context "
                    f"({', '.join(invented)}): ask for them instead of inventing them"
                )
        return self


def _numbers(text: str) -> list[str]:
    return _DIGITS.findall(REDACTION_PLACEHOLDER.sub(" ", text))


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema a model is asked to follow (no titles: they only cost tokens)."""
    schema = model.model_json_schema()
    _strip_titles(schema)
    return schema


def _strip_titles(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):  # a title annotation, not a property so named
            node.pop("title")
        for value in node.values():
            _strip_titles(value)
    elif isinstance(node, list):
        for value in node:
            _strip_titles(value)
