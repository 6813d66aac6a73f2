"""The operator's main path in a real browser: sign in, open a ticket from the board, edit the
model's draft, approve it, and see the reply leave through the mailbox."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

from playwright.sync_api import Page, expect

from tests.e2e.console_steps import card, reload_until, save_screenshot, sign_in
from tests.e2e.site import OPERATOR, ConsoleSite

EDITED_REPLY = (
    "Hello Maria,\n\n"
    "I am sorry the kettle from order 4417 arrived with a cracked lid. A replacement kettle "
    "leaves our warehouse today (reference R-4417-B); you can keep or recycle the damaged one.\n\n"
    "Kind regards,\nOlivia"
)


def _sent_replies(site: ConsoleSite) -> list[EmailMessage]:
    sent = site.mail_folder / "sent"
    files = sorted(sent.glob("*.eml")) if sent.is_dir() else []
    return [
        email.message_from_bytes(f.read_bytes(), _class=EmailMessage, policy=policy.default)
        for f in files
    ]


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the reply has no text part"
    return str(part.get_content()).replace("\r\n", "\n")


def test_operator_edits_approves_and_the_reply_is_sent(page: Page, site: ConsoleSite) -> None:
    ticket_id = site.tickets["reply"]
    sign_in(page, OPERATOR)
    page.locator(card(ticket_id)).locator(".card-link").click()
    expect(page).to_have_url(f"{site.base_url}/tickets/{ticket_id}")
    expect(page.locator("h1")).to_contain_text("Order 4417 arrived with a cracked lid")

    editor = page.locator("#draft-body")
    expect(editor).not_to_have_value("")  # the model's draft is there to edit
    editor.fill(EDITED_REPLY)
    page.get_by_role("button", name="Approve and send").click()
    expect(page.locator("#flash")).to_contain_text(
        "Approved: the reply is queued and will be sent shortly."
    )

    reload_until(page, f"/tickets/{ticket_id}", ".flash.ok", "The last reply was sent")
    expect(page.locator("[data-state]")).to_have_text("WAITING OTHERS")
    expect(page.locator(".message.outbound .new-content")).to_contain_text("R-4417-B")
    save_screenshot(page, "ticket")
    page.goto("/board")
    expect(page.locator(card(ticket_id, "WAITING_OTHERS"))).to_be_visible()
    save_screenshot(page, "board")

    replies = [m for m in _sent_replies(site) if "R-4417-B" in _text(m)]
    assert len(replies) == 1, [m["Subject"] for m in _sent_replies(site)]
    reply = replies[0]
    assert _text(reply).count(EDITED_REPLY) == 1, _text(reply)
    assert "maria.lopez@example.net" in str(reply["To"])
    assert reply["In-Reply-To"] == "<e2e-reply@mail.example.net>"
