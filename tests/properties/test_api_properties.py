"""Property-based tests of every API schema and console form: any body a client can send gets
an answer below 500 (a 4xx that says what to fix, or success), never a crash."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from communication_agent.models.enums import Role
from tests.api.test_auth_required import _all_routes
from tests.console.browser import page_csrf, sign_in
from tests.factories import Factory

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=50),
    st.sampled_from(["NEW", "DONE", "me", "", "0", "-1", "9" * 30, "\x00", "../../x"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["body", "version", "state", "reason", "assignee_id", "assignee", "instruction",
     "expected_version", "text", "csrf_token", "back", "cursor", "limit", "sort"]
)  # fmt: skip
json_bodies = st.one_of(json_values, st.dictionaries(field_names, json_values, max_size=5))
form_bodies = st.dictionaries(field_names, st.text(max_size=80), max_size=6)
path_ids = st.one_of(
    st.integers(min_value=-5, max_value=5).map(str),
    st.sampled_from(["1", "2147483647", "2147483648", "99999999999999999999", "abc", "%00"]),
)


def _fill(path: str, value: str) -> str:
    for name in ("ticket_id", "draft_id", "mailbox_id", "message_id", "attachment_id", "state"):
        path = path.replace("{" + name + "}", value)
    return path


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_api_body_or_id_makes_the_server_fail(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory, data: st.DataObject
) -> None:
    app, client = app_client
    admin = await factory.principal(Role.ADMIN)
    routes = sorted(
        (m, p) for m, p in set(_all_routes(app)) if m in MUTATING and p.startswith("/api/")
    )
    method, path = data.draw(st.sampled_from(routes))
    concrete = _fill(path, data.draw(path_ids))
    body: Any = data.draw(json_bodies)
    response = await client.request(
        method,
        concrete,
        content=json.dumps(body),
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code < 500 or response.status_code in {502, 503}, (
        method, concrete, body, response.status_code, response.text[:300],
    )  # fmt: skip
    if response.status_code >= 400:
        assert response.json()["error"]["message"]  # says what to fix


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_console_form_makes_the_server_fail(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory, data: st.DataObject
) -> None:
    app, client = app_client
    if "ca_session" not in client.cookies:
        admin = await factory.principal(Role.ADMIN)
        await sign_in(client, admin.user.email)
    csrf = await page_csrf(client)
    routes = sorted(
        (m, p)
        for m, p in set(_all_routes(app))
        if m in MUTATING and not p.startswith("/api/") and p not in {"/login", "/logout"}
    )
    method, path = data.draw(st.sampled_from(routes))
    concrete = _fill(path, data.draw(path_ids))
    form = {**data.draw(form_bodies), "csrf_token": csrf}
    response = await client.request(method, concrete, data=form)
    assert response.status_code < 500 or response.status_code in {502, 503}, (
        method, concrete, form, response.status_code, response.text[:300],
    )  # fmt: skip
