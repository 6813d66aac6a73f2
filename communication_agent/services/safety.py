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
        r"your|system|everything|before)\b[^.\n]{0,30}\b(instructions?|prompts?|rules|directions|"
        r"told|said|above)"
        r"|\b(forget|ignore|disregard)\b[^.\n]{0,20}\b(what|everything|anything)\b[^.\n]{0,25}"
        r"\b(told|said|instructed|above|before)\b",
    ),
    (
        "addresses the AI directly",
        r"\b(you are now|act as|pretend to be|as an ai|language model)\b"
        r"|\b(note|message|instructions?|command)s? (to|for) (the |any )?"
        r"(ai|assistant|model|bot|llm)\b",
    ),
    (
        "imitates a system or assistant message",
        r"(?m)^\W{0,3}(system|assistant|developer|ai)\s*(:|>|\])"
        r"|\b(system prompt|developer mode|jailbreak)\b"
        r"|<\s*/?\s*(system|im_start|inst)\b|\[/?inst\]",
    ),
    (
        "asks to change the ticket's state",
        r"\b(mark|set|move|close)\b[^.\n]{0,30}\b(ticket|conversation|case|this|it)\b[^.\n]{0,20}"
        r"\b(done|resolved|closed|solved)\b"
        r"|\bclose (this|the|my) (ticket|case|conversation|request)\b"
        r"|\b(needs|requires) no (reply|response|answer|action)\b",
    ),
    (
        "tells the assistant how to classify it",
        r"\b(classify|categori[sz]e|label|tag|route|triage|treat)\b[^.\n]{0,30}"
        r"\b(this|it|the (ticket|email|message|mail))\b[^.\n]{0,15}\bas\b",
    ),
    (
        "asks for credentials",
        r"\b(admin(istrator)?|root|master|api)\s*(password|key|token|credentials?)\b",
    ),
    (
        "instructions in another language",
        r"\b(ignoriere|ignorez|ignora|negeer|ignore)\b[^.\n]{0,40}\b(anweisungen|instructions|"
        r"instrucciones|istruzioni|instructies|instruções|instrucoes)\b",
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


CLOSABLE_MAX_WORDS = 60


def looks_closable(text: str) -> bool:
    """A deterministic second opinion before a ticket is closed without a person: the newest
    message is short and asks nothing. A model's "no reply needed" on anything longer, or on a
    question, goes to a person instead, however confident the model is."""
    return len(text.split()) <= CLOSABLE_MAX_WORDS and "?" not in text


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
