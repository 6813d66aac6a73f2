"""Masking personal data before it leaves for a remote model (`COMMAGENT_LLM_REDACT=true`).

Email addresses, phone numbers and card-like numbers (13 to 19 digits passing the Luhn check)
in the ticket are replaced by placeholders such as `[EMAIL_1]`; the same value always gets the
same placeholder, so the model can still refer to it. The model's draft and plan are then
restored, so the operator reads the real values. `RedactingModel` wraps any backend this way;
the services never know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from communication_agent.adapters.reasoning import Reasoned, ReasoningModel
from communication_agent.models.schemas.reasoning import (
    REDACTION_PLACEHOLDER,
    ContextMessage,
    EarlierTicket,
    PlanStep,
    Proposal,
    TicketContext,
    Triage,
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# A phone number starts with "+" or "(" or is digits in groups (spaces, dashes, dots); a bare
# run of digits (an order number) or anything glued to letters ("INV-2024-000123") is not one,
# and neither is a date.
_PHONE = re.compile(
    r"(?<![\w-])(?:\+|\(\d)[\d ()./-]{6,}\d(?![\w-])"  # +49 30 ..., (030) ...
    r"|(?<![\w-])\d{2,5}(?:[ ./-]\d{2,5}){2,4}(?![\w-])"  # 030 555 77 88
)
_DATE = re.compile(r"^(\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass
class Redactor:
    """One ticket's mapping between real values and placeholders."""

    originals: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    _placeholders: dict[str, str] = field(default_factory=dict)  # value -> placeholder

    def mask(self, text: str) -> str:
        text = _EMAIL.sub(lambda m: self._placeholder("EMAIL", m.group()), text)
        text = _CARD.sub(self._card, text)
        return _PHONE.sub(self._phone, text)

    def restore(self, text: str) -> str:
        return REDACTION_PLACEHOLDER.sub(lambda m: self.originals.get(m.group(), m.group()), text)

    def _card(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return self._placeholder("CARD", match.group()) if _luhn(digits) else match.group()

    def _phone(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        if len(digits) < 7 or len(digits) > 15 or _DATE.match(match.group().strip(" ()")):
            return match.group()
        return self._placeholder("PHONE", match.group())

    def _placeholder(self, kind: str, value: str) -> str:
        if value not in self._placeholders:
            count = sum(1 for p in self.originals if p.startswith(f"[{kind}_")) + 1
            placeholder = f"[{kind}_{count}]"
            self._placeholders[value] = placeholder
            self.originals[placeholder] = value
        return self._placeholders[value]

    def context(self, context: TicketContext) -> TicketContext:
        return context.model_copy(
            update={
                "subject": self.mask(context.subject),
                "customer_email": self.mask(context.customer_email),
                "mailbox_address": self.mask(context.mailbox_address),
                "messages": [
                    ContextMessage(
                        **{
                            **m.model_dump(),
                            "from_address": self.mask(m.from_address),
                            "subject": self.mask(m.subject),
                            "text": self.mask(m.text),
                        }
                    )
                    for m in context.messages
                ],
                "earlier_tickets": [
                    EarlierTicket(**{**t.model_dump(), "subject": self.mask(t.subject)})
                    for t in context.earlier_tickets
                ],
                "instruction": self.mask(context.instruction) if context.instruction else None,
            }
        )


class RedactingModel:
    """Any backend, fed masked tickets; its proposals come back with the real values."""

    def __init__(self, inner: ReasoningModel) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.model = inner.model
        self.prompt_version = inner.prompt_version

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def triage(self, context: TicketContext) -> Reasoned[Triage]:
        redactor = Redactor()
        result = await self.inner.triage(redactor.context(context))
        if result.value is not None:
            summary = redactor.restore(result.value.summary)
            result.value = result.value.model_copy(update={"summary": summary})
        return result

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]:
        redactor = Redactor()
        result = await self.inner.propose(redactor.context(context))
        if result.value is not None:
            proposal = result.value
            result.value = proposal.model_copy(
                update={
                    "body": redactor.restore(proposal.body),
                    "needs_info": [redactor.restore(n) for n in proposal.needs_info],
                    "plan": [
                        PlanStep(
                            action=redactor.restore(s.action),
                            reason=redactor.restore(s.reason),
                            citations=s.citations,
                        )
                        for s in proposal.plan
                    ],
                }
            )
        return result
