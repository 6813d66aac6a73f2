"""A hostile email in a real browser: script, event handlers, `javascript:` links, CSS, frames
and a meta refresh, in the subject, the sender's name, the text and the HTML. Nothing of it may
run or call out; it shows as text. Remote images stay blocked until the operator asks."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Dialog, Frame, Page, expect

from tests.e2e.console_steps import card, save_screenshot, sign_in
from tests.e2e.loopback import CountingServer
from tests.e2e.mail_folder import HOSTILE_NAME, HOSTILE_SUBJECT
from tests.e2e.site import OPERATOR, ConsoleSite

# Anything in the page's own DOM that the mail could have smuggled in as markup.
SMUGGLED = (
    "script:not([src]), script[src*='127.0.0.1:'], img[onerror], svg, iframe[srcdoc], "
    "meta[http-equiv], [style*='url('], a[href^='javascript:'], form[action*='127.0.0.1']"
)
SETTLE_SECONDS = 0.5  # long enough for a 0-second meta refresh or an onerror to have fired


def _watch_dialogs(page: Page) -> list[str]:
    seen: list[str] = []

    def record(dialog: Dialog) -> None:
        seen.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", record)
    return seen


def _marks(target: Page | Frame) -> Any:
    """What a payload leaves behind when it runs."""
    return target.evaluate("() => ({pwned: window.__pwned ?? null, title: document.title})")


def _assert_nothing_ran(page: Page, dialogs: list[str], canary: CountingServer) -> None:
    time.sleep(SETTLE_SECONDS)
    assert dialogs == []
    assert canary.paths == []
    marks = _marks(page)
    assert marks["pwned"] is None
    assert "PWNED" not in marks["title"]
    assert page.locator(SMUGGLED).count() == 0


def _message_frame(page: Page, message_id: int) -> Frame:
    frame = page.frame(name=f"html-{message_id}")
    assert frame is not None, "the formatted version's frame is missing"
    return frame


def test_hostile_mail_shows_as_text_and_runs_nothing(
    page: Page, site: ConsoleSite, canary: CountingServer, image_server: CountingServer
) -> None:
    ticket_id = site.tickets["hostile"]
    message_id = site.ticket("hostile")["messages"][0]["id"]
    dialogs = _watch_dialogs(page)
    sign_in(page, OPERATOR)

    hostile_card = page.locator(card(ticket_id))
    expect(hostile_card.locator(".subject")).to_have_text(HOSTILE_SUBJECT)
    expect(hostile_card.locator(".customer")).to_have_text(HOSTILE_NAME)
    _assert_nothing_ran(page, dialogs, canary)

    hostile_card.locator(".card-link").click()
    expect(page).to_have_url(f"{site.base_url}/tickets/{ticket_id}")
    expect(page.locator("h1")).to_contain_text(HOSTILE_SUBJECT)
    expect(page).to_have_title(f"#{ticket_id} {HOSTILE_SUBJECT} · Communication Agent")
    message = page.locator(f"#message-{message_id}")
    expect(message.locator("summary strong").first).to_have_text(HOSTILE_NAME)
    expect(message.locator(".new-content")).to_contain_text("<script>alert('body')</script>")
    expect(message.locator(".new-content")).to_contain_text("<img src=x onerror=")

    message.get_by_text("Show formatted (HTML) version").click()
    frame = page.frame_locator(f'iframe[name="html-{message_id}"]')
    expect(frame.locator("body")).to_contain_text("I was charged twice for invoice 8812")
    frame.get_by_text("Open my receipt").click()  # a `javascript:` link, if it survived
    _assert_nothing_ran(page, dialogs, canary)
    assert _marks(_message_frame(page, message_id))["pwned"] is None
    assert image_server.paths == [], "remote images loaded before the operator asked"
    save_screenshot(page, "hostile-ticket")

    message.get_by_role("link", name="load them").click()
    deadline = time.monotonic() + 10
    while image_server.hits("/pixel.png") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert image_server.hits("/pixel.png") >= 1, image_server.paths
    expect(frame.locator("body")).to_contain_text("I was charged twice for invoice 8812")
    _assert_nothing_ran(page, dialogs, canary)
    assert _marks(_message_frame(page, message_id))["pwned"] is None
