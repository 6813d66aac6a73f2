"""Header injection in outgoing mail: CR/LF in any value that reaches a header of our reply."""

from __future__ import annotations

import email
import email.policy

import pytest

from communication_agent.services.compose import reply_message

INJECTIONS = [
    "Ada\r\nBcc: victim@example.net",
    "Ada\nBcc: victim@example.net",
    "Ada\rBcc: victim@example.net",
    "Ada\r\n\r\nInjected body",
    "Ada\x00\nX-Evil: 1",
]


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("field", ["to_name", "from_name", "subject", "in_reply_to", "reference"])
def test_line_breaks_never_create_a_header_or_a_body(field: str, payload: str) -> None:
    values = {
        "from_address": "support@company.example",
        "from_name": "Support",
        "to_address": "ada@example.org",
        "to_name": "Ada",
        "subject": "Order 7",
        "body": "Thanks for writing.",
        "message_id": "<reply.1.abc@company.example>",
        "in_reply_to": "<question@example.org>",
    }
    references = ["<first@example.org>"]
    if field == "reference":
        references = [payload]
    else:
        values[field] = payload
    raw = reply_message(**values, references=references)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None
    assert parsed.get_all("To") is not None
    assert len(parsed.get_all("To") or []) == 1
    assert str(parsed["To"]).endswith("ada@example.org>")
    text = parsed.get_body(("plain",))
    assert text is not None
    assert text.get_content().strip() == "Thanks for writing."  # nothing smuggled into the body
    header_block = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n")[0]
    assert b"\nBcc:" not in header_block
    assert b"\nX-Evil:" not in header_block
