"""Every route but /healthz, /readyz and the sign-in form refuses anonymous calls (the API with
401, the console by sending the browser to sign in); viewers cannot mutate anything."""

import re
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from communication_agent.api.console import is_console_path
from communication_agent.models.enums import Role
from tests.factories import Factory

# /readyz is for load balancers: anonymous callers get states and counts only (see
# tests/api/test_readiness.py); credentials there add details, never refuse.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/login"), ("POST", "/login")}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _openapi_operations(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.120 includes lazily
        if included is not None:
            yield from _walk(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            for method in route.methods or ():
                yield method, prefix + route.path


def _all_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every route the app serves, including those kept out of the OpenAPI document."""
    return list(_walk(app.routes))


async def test_every_openapi_operation_refuses_anonymous_calls(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    operations = _openapi_operations(app)
    assert len(operations) >= 8  # the API skeleton is all there
    checked = 0
    for method, path in operations:
        if (method, path) in PUBLIC:
            continue
        response = await client.request(method, _concrete(path), json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "not_authenticated"
        checked += 1
    assert checked == len(operations) - len(PUBLIC & set(operations))


async def test_every_route_including_docs_refuses_anonymous_and_bad_tokens(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    routes = _all_routes(app)
    assert ("GET", "/openapi.json") in routes
    assert ("GET", "/docs") in routes
    for method, path in routes:
        if (method, path) in PUBLIC or method == "HEAD":
            continue
        for headers in (
            {},
            {"Authorization": "Bearer cat_not-a-real-token"},
            {"Authorization": "Basic eDp5"},
        ):
            response = await client.request(method, _concrete(path), json={}, headers=headers)
            if is_console_path(response.request.url.path):
                # A bearer token is no way into the console: only its session cookie is.
                assert response.status_code == 303, (method, path, headers, response.text)
                assert response.headers["location"].startswith("/login?next="), (method, path)
            else:
                assert response.status_code == 401, (method, path, headers, response.text)


async def test_healthz_is_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_docs_are_served_to_authenticated_users(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    spec = await client.get("/openapi.json", headers=viewer.headers)
    assert spec.status_code == 200
    assert "/api/v1/tickets/{ticket_id}/state" in spec.json()["paths"]
    docs = await client.get("/docs", headers=viewer.headers)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_viewers_cannot_call_any_mutating_operation(
    app_client: tuple[FastAPI, httpx.AsyncClient], factory: Factory
) -> None:
    app, client = app_client
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    mutating = [(m, p) for m, p in _openapi_operations(app) if m in MUTATING]
    assert mutating
    for method, path in mutating:
        concrete = path.replace("{ticket_id}", str(ticket.id))
        response = await client.request(method, concrete, json={}, headers=viewer.headers)
        assert response.status_code == 403, (method, path, response.text)
        message = response.json()["error"]["message"]  # admin-only routes name that role
        assert "operator role" in message or "admin role" in message, (method, path, message)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
async def test_every_role_can_read(client: httpx.AsyncClient, factory: Factory, role: Role) -> None:
    principal = await factory.principal(role)
    ticket = await factory.ticket()
    for path in (
        "/api/v1/me",
        "/api/v1/tickets",
        f"/api/v1/tickets/{ticket.id}",
        "/api/v1/activity",
    ):
        response = await client.get(path, headers=principal.headers)
        assert response.status_code == 200, (path, response.text)
