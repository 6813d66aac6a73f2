"""Email is untrusted input: spotting text aimed at the model, and checking what came back.

Nothing here blocks a message or a draft. A hit is a *review flag*: it is stored with the
triage and the draft, shown to the operator, and it stops automatic routing from closing the
ticket (see `services/routing.py`). The model's output is advice either way; these flags say
where a person should look twice.
"""

from __future__ import annotations

import re

from communication_agent.models.schemas.reasoning import Proposal, TicketContext

_INJECTION = [
    (
        "asks the assistant to ignore its instructions",
        r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|all|"
        r"your|system)\b[^.\n]{0,20}\b(instructions?|prompts?|rules|directions)",
    ),
    (
        "addresses the AI directly",
        r"\b(you are now|act as|pretend to be|as an ai|language model)\b",
    ),
    ("mentions a system prompt", r"\b(system prompt|developer mode|jailbreak|<\s*/?\s*system\s*>)"),
    (
        "asks to change the ticket's state",
        r"\b(mark|set|move|close)\b[^.\n]{0,30}\b(ticket|conversation|case|this)\b[^.\n]{0,20}"
        r"\b(done|resolved|closed|solved)\b",
    ),
    (
        "asks for credentials",
        r"\b(admin(istrator)?|root|master|api)\s*(password|key|token|credentials?)\b",
    ),
    (
        "instructions in another language",
        r"\b(ignoriere|ignorez|ignora|negeer)\b[^.\n]{0,40}\b(anweisungen|instructions|"
        r"instrucciones|istruzioni|instructies)\b",
    ),
]
_PATTERNS = [(label, re.compile(pattern, re.IGNORECASE)) for label, pattern in _INJECTION]
_URL = re.compile(r"https?://[^\s<>\"')]+", re.IGNORECASE)


def injection_flags(context: TicketContext, full_texts: dict[int, str]) -> list[str]:
    """Review flags for the conversation. `full_texts` are whole bodies (quoted history
    included: instructions hidden in a quote count too), by message id."""
    flags: list[str] = []
    for message in context.messages:
        if message.direction != "inbound":
            continue
        text = f"{message.subject}\n{full_texts.get(message.id, message.text)}"
        for label, pattern in _PATTERNS:
            if pattern.search(text):
                flags.append(f"message:{message.id} {label}")
        if message.suspicious_html:
            flags.append(f"message:{message.id} hides text in its HTML")
    return sorted(set(flags))


def proposal_flags(proposal: Proposal, context: TicketContext, secrets: list[str]) -> list[str]:
    """Review flags for a draft: links the conversation never had, leaked secrets."""
    flags = []
    known_links = set(_URL.findall(context.grounding_text()))
    for link in _URL.findall(proposal.body):
        if link not in known_links:
            flags.append(f"links to {link[:80]}, which is not in the conversation")
    lowered = proposal.body.lower()
    if any(secret and secret.lower() in lowered for secret in secrets):
        flags.append("contains a configured secret")
    if re.search(r"\bpassword\s*(is|:)\s*\S+", proposal.body, re.IGNORECASE):
        flags.append("states a password")
    return flags
