"""The keyboard in a real browser: on the board `j` selects a card and Enter opens it, and `?`
shows the shortcuts."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.console_steps import sign_in
from tests.e2e.site import OPERATOR, ConsoleSite


def test_j_selects_a_card_enter_opens_it_and_question_mark_shows_help(
    page: Page, site: ConsoleSite
) -> None:
    ticket_id = site.tickets["keyboard"]
    sign_in(page, OPERATOR)
    page.goto("/board?q=projects+to+CSV")  # this test's ticket only
    expect(page.locator(".card")).to_have_count(1)

    help_overlay = page.locator("#help")
    page.keyboard.press("?")
    expect(help_overlay).to_be_visible()
    expect(help_overlay).to_contain_text("Keyboard shortcuts")
    page.keyboard.press("Escape")
    expect(help_overlay).to_be_hidden()

    page.keyboard.press("j")
    expect(page.locator(".card.selected")).to_have_attribute("data-ticket", str(ticket_id))
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.base_url}/tickets/{ticket_id}")
    expect(page.locator("h1")).to_contain_text("How do I export all my projects to CSV?")

    page.keyboard.press("?")
    expect(help_overlay).to_be_visible()
