"""Signing in to the console over HTTP, as a browser does: the form, its token, the cookie."""

from __future__ import annotations

import re

import httpx

from tests.factories import PASSWORD

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    found = _CSRF_FIELD.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, next_url: str = "/board"
) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200
    return await client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_from(form.text),
            "next": next_url,
        },
    )


async def page_csrf(client: httpx.AsyncClient, path: str = "/board") -> str:
    """The session's CSRF token, read off a page the way a form carries it."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_from(page.text)


def draft_version(html: str) -> int:
    """The draft version the editor form carries (what an approval is based on)."""
    form = html[html.index('id="draft-form"') :]
    found = re.search(r'name="version" value="(\d+)"', form)
    assert found, "no draft version in the editor form"
    return int(found.group(1))
