"""A viewer in a real browser: the ticket shows no way to approve, and an approval posted with
the viewer's own valid session and CSRF token is refused for the role."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.console_steps import csrf_token, sign_in
from tests.e2e.site import VIEWER, ConsoleSite


def test_a_viewer_cannot_approve_a_draft(page: Page, site: ConsoleSite) -> None:
    ticket_id = site.tickets["viewer"]
    draft = site.ticket("viewer")["latest_draft"]
    sign_in(page, VIEWER)
    page.goto(f"/tickets/{ticket_id}")

    expect(page.locator("h1")).to_contain_text("Invoice INV-2291 lists the wrong VAT number")
    expect(page.locator(".draft-readonly").first).to_contain_text(draft["body"].splitlines()[0])
    expect(page.get_by_role("button", name="Approve and send")).to_have_count(0)
    expect(page.locator("[data-approve], #draft-body")).to_have_count(0)
    expect(page.get_by_text("acting on it needs the operator role")).to_be_visible()

    answer = page.request.post(
        f"/drafts/{draft['id']}/approve",
        form={
            "csrf_token": csrf_token(page),
            "body": "Approved by someone who may only read.",
            "version": str(draft["version"]),
        },
        max_redirects=0,
    )
    assert answer.status == 403
    assert "This needs the operator role" in answer.text()
    assert "CSRF" not in answer.text()

    after = site.ticket("viewer")["latest_draft"]
    assert (after["status"], after["version"], after["body"]) == (
        draft["status"],
        draft["version"],
        draft["body"],
    )
    assert after["approved_at"] is None
