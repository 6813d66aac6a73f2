"""What an operator does in the console, as browser steps the tests share."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.site import Person

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def sign_in(page: Page, person: Person) -> None:
    """Through the sign-in form, as a person would; lands on the board."""
    page.goto("/login")
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/board$"))
    expect(page.locator(".topbar")).to_contain_text(person.name)


def card(ticket_id: int, column: str | None = None) -> str:
    """The selector of a ticket's card on the board (in one column when given)."""
    scope = f"#cards-{column} " if column else ""
    return f'{scope}.card[data-ticket="{ticket_id}"]'


def reload_until(page: Page, path: str, selector: str, text: str, seconds: float = 15) -> None:
    """Open `path` again until `selector` shows `text`: for what background work changes
    (a page does not update itself when the sender has sent)."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto(path)
        found = page.locator(selector, has_text=text)
        if found.count() > 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no {selector!r} with {text!r} after {seconds} s")
        time.sleep(0.3)


def csrf_token(page: Page) -> str:
    """The session's CSRF token, as the page's own forms carry it."""
    value = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert value, "no CSRF token on the page"
    return value


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under `test-artifacts/e2e/` (CI keeps that folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
