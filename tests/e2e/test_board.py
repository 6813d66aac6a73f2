"""The board's own forms in a real browser: moving a card with its Move button answers with the
whole board again, not just its columns (the columns' self-refresh settings must not leak into
the forms on the cards)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.console_steps import card, sign_in
from tests.e2e.site import OPERATOR, ConsoleSite


def test_moving_a_card_keeps_the_whole_board(page: Page, site: ConsoleSite) -> None:
    ticket_id = site.tickets["move"]
    sign_in(page, OPERATOR)
    moving = page.locator(card(ticket_id))
    moving.locator("select").select_option("WAITING_OTHERS")
    moving.get_by_role("button", name="Move").click()

    expect(page.locator(card(ticket_id, "WAITING_OTHERS"))).to_be_visible()
    expect(page).to_have_url(f"{site.base_url}/board")
    expect(page.locator(".topbar")).to_contain_text(OPERATOR.name)
    expect(page.locator("form.filters")).to_be_visible()
    expect(page.locator("#app #board-columns")).to_have_count(1)
    assert site.ticket("move")["state"] == "WAITING_OTHERS"
