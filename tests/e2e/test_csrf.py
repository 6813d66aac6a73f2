"""Forms posted without the session's CSRF token are refused in a real browser, whether the
token was taken out of the console's own form or a page built a form without it."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.console_steps import sign_in
from tests.e2e.site import OPERATOR, ConsoleSite

REFUSED = "did not carry the console's CSRF token"


def _state(site: ConsoleSite) -> dict[str, Any]:
    """What a refused form must not have changed."""
    detail = site.ticket("csrf")
    draft = detail["latest_draft"]
    return {
        "ticket": (detail["state"], detail["version"], detail["assignee"]),
        "notes": detail["notes"],
        "draft": (draft["id"], draft["status"], draft["version"], draft["body"]),
    }


def _submit_natively(page: Page, expected_path: str, script: str, argument: Any) -> None:
    """Run `script`, which submits a form with `HTMLFormElement.submit()`: no submit event,
    so htmx does not see it and sends neither its headers nor the token. The browser
    navigates to the answer."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(expected_path)
    ) as answer:
        page.evaluate(script, argument)
    refused = answer.value
    assert refused.status == 403
    sent_headers = refused.request.headers
    assert "x-csrf-token" not in sent_headers
    assert "hx-request" not in sent_headers
    assert "csrf_token" not in (refused.request.post_data or "")
    expect(page.locator("h1")).to_have_text("That did not work")
    expect(page.locator(".flash.error")).to_contain_text(REFUSED)


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    page: Page, site: ConsoleSite
) -> None:
    ticket_id = site.tickets["csrf"]
    before = _state(site)
    draft_id, _status, version, _body = before["draft"]
    sign_in(page, OPERATOR)

    page.goto(f"/tickets/{ticket_id}")
    page.locator("#note-body").fill("A note that must never be saved.")
    _submit_natively(
        page,
        f"/tickets/{ticket_id}/notes",
        """() => {
            const form = document.querySelector('#note-body').closest('form');
            form.querySelector('input[name="csrf_token"]').remove();
            HTMLFormElement.prototype.submit.call(form);
        }""",
        None,
    )

    page.goto(f"/tickets/{ticket_id}")
    _submit_natively(
        page,
        f"/drafts/{draft_id}/approve",
        """([action, version]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            for (const [name, value] of [['body', 'Sent without a token.'], ['version', version]]) {
                const field = document.createElement('input');
                field.type = 'hidden';
                field.name = name;
                field.value = value;
                form.appendChild(field);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
        [f"/drafts/{draft_id}/approve", str(version)],
    )

    assert _state(site) == before
