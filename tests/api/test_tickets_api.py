import base64
import json
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.models import Draft, TriageResult
from communication_agent.models.enums import DraftStatus, Priority, Role, TicketState
from communication_agent.services.tickets import DEFAULT_SORT, SORTS
from tests.factories import Factory, Principal

API = "/api/v1"


async def _operator(factory: Factory) -> Principal:
    return await factory.principal(Role.OPERATOR)


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "details"}
    return body


async def test_me_describes_the_caller(client: httpx.AsyncClient, factory: Factory) -> None:
    admin = await factory.principal(Role.ADMIN, email="boss@staff.example.com")
    body = (await client.get(f"{API}/me", headers=admin.headers)).json()
    assert body["email"] == "boss@staff.example.com"
    assert body["role"] == "admin"
    assert body["auth"] == "token"
    assert body["token_id"] is not None


async def test_list_filters_and_search_through_the_api(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    mailbox = await factory.mailbox()
    mine = await factory.ticket(mailbox=mailbox, assignee_id=op.user.id, subject="Login broken")
    urgent = await factory.ticket(priority=Priority.URGENT, state=TicketState.NEEDS_ACTION)
    await factory.ticket(state=TicketState.DONE)

    async def ids(params: dict[str, Any]) -> list[int]:
        response = await client.get(f"{API}/tickets", params=params, headers=op.headers)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert await ids({"assignee": "me"}) == [mine.id]
    assert mine.id not in await ids({"assignee": "none"})
    assert await ids({"priority": "urgent"}) == [urgent.id]
    assert set(await ids({"state": ["NEW", "NEEDS_ACTION"]})) == {mine.id, urgent.id}
    assert await ids({"mailbox_id": mailbox.id}) == [mine.id]
    assert await ids({"q": "login"}) == [mine.id]
    summary = (await client.get(f"{API}/tickets", params={"q": "login"}, headers=op.headers)).json()
    item = summary["items"][0]
    assert item["customer"]["email"].endswith("@example.org")
    assert item["assignee"]["id"] == op.user.id
    assert item["version"] == 1


async def test_cursor_pagination_through_the_api(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    created = {(await factory.ticket()).id for _ in range(5)}
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = (await client.get(f"{API}/tickets", params=params, headers=op.headers)).json()
        seen += [t["id"] for t in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(seen) == sorted(created)
    assert seen == sorted(seen, reverse=True)


async def test_bad_list_parameters_get_clear_422s(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    cases = {
        "state=OPEN": "query.state.0",
        "assignee=someone": "query.assignee",
        "limit=0": "query.limit",
        "sort=priority": "query.sort: Input should be '-created_at', 'created_at', '-updated_at' or 'updated_at'",
        "cursor=%25%25%25": "cursor is not valid",
    }
    for query, expected in cases.items():
        response = await client.get(f"{API}/tickets?{query}", headers=op.headers)
        assert response.status_code == 422, (query, response.text)
        assert expected in _error(response)["message"], (query, response.text)


async def test_ticket_detail_has_messages_notes_triage_and_draft(
    client: httpx.AsyncClient, factory: Factory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    op = await _operator(factory)
    ticket = await factory.ticket(body="Where is my parcel?")
    async with sessionmaker() as session:
        session.add(
            TriageResult(
                ticket_id=ticket.id,
                category="shipping",
                priority="high",
                summary="Parcel late",
                confidence=0.8,
                provider="offline",
            )
        )
        session.add(
            Draft(
                ticket_id=ticket.id,
                status=DraftStatus.PROPOSED.value,
                body="Hi!",
                author="model:offline",
            )
        )
        await session.commit()
    note = await client.post(
        f"{API}/tickets/{ticket.id}/notes", json={"body": "VIP"}, headers=op.headers
    )
    assert note.status_code == 201

    body = (await client.get(f"{API}/tickets/{ticket.id}", headers=op.headers)).json()
    assert [m["body_text"] for m in body["messages"]] == ["Where is my parcel?"]
    assert body["messages"][0]["direction"] == "inbound"
    assert [n["body"] for n in body["notes"]] == ["VIP"]
    assert body["latest_triage"]["summary"] == "Parcel late"
    assert body["latest_draft"]["status"] == "proposed"


async def test_unknown_and_absurd_ticket_ids(client: httpx.AsyncClient, factory: Factory) -> None:
    op = await _operator(factory)
    missing = await client.get(f"{API}/tickets/424242", headers=op.headers)
    assert missing.status_code == 404
    assert _error(missing)["message"] == "Ticket 424242 does not exist."
    for absurd in ("0", "-1", "99999999999999999999", "abc"):
        response = await client.get(f"{API}/tickets/{absurd}", headers=op.headers)
        assert response.status_code == 422, (absurd, response.text)


async def test_state_change_success_and_both_kinds_of_409(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    ticket = await factory.ticket()
    url = f"{API}/tickets/{ticket.id}/state"

    ok = await client.post(
        url, json={"state": "DONE", "version": 1, "reason": "no reply needed"}, headers=op.headers
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "DONE"
    assert ok.json()["version"] == 2
    assert ok.json()["resolved_at"] is not None

    stale = await client.post(url, json={"state": "NEEDS_ACTION", "version": 1}, headers=op.headers)
    assert stale.status_code == 409
    assert _error(stale)["code"] == "stale_version"
    assert _error(stale)["details"]["current_version"] == 2

    invalid = await client.post(
        url, json={"state": "WAITING_OTHERS", "version": 2}, headers=op.headers
    )
    assert invalid.status_code == 409
    error = _error(invalid)
    assert error["code"] == "invalid_transition"
    assert error["details"]["allowed"] == ["NEEDS_ACTION"]
    assert "allowed targets: NEEDS_ACTION" in error["message"]


async def test_malformed_state_requests_say_what_to_fix(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    ticket = await factory.ticket()
    url = f"{API}/tickets/{ticket.id}/state"
    cases: list[tuple[Any, str]] = [
        ({"state": "DONE"}, "version: Field required"),
        ({"state": "CLOSED", "version": 1}, "state: Input should be"),
        (
            {"state": "DONE", "version": 1, "colour": "red"},
            "colour: Extra inputs are not permitted",
        ),
        ({"state": "DONE", "version": 0}, "version: Input should be greater than or equal to 1"),
        (
            {"state": "DONE", "version": 1, "reason": "x" * 1001},
            "reason: String should have at most",
        ),
        ([1, 2], "Input should be a valid dictionary"),
    ]
    for body, expected in cases:
        response = await client.post(url, json=body, headers=op.headers)
        assert response.status_code == 422, (body, response.text)
        assert expected in _error(response)["message"], (body, response.text)
    raw = await client.post(
        url, content=b"{not json", headers={**op.headers, "content-type": "application/json"}
    )
    assert raw.status_code == 422
    assert "not valid JSON" in _error(raw)["message"]


async def test_assignment_through_the_api(client: httpx.AsyncClient, factory: Factory) -> None:
    op = await _operator(factory)
    viewer = await factory.principal(Role.VIEWER)
    ticket = await factory.ticket()
    url = f"{API}/tickets/{ticket.id}/assign"

    assigned = await client.post(url, json={"assignee_id": op.user.id}, headers=op.headers)
    assert assigned.status_code == 200
    assert assigned.json()["assignee"]["email"] == op.user.email

    to_viewer = await client.post(url, json={"assignee_id": viewer.user.id}, headers=op.headers)
    assert to_viewer.status_code == 422
    assert "cannot work on tickets" in _error(to_viewer)["message"]

    stale = await client.post(url, json={"assignee_id": None, "version": 1}, headers=op.headers)
    assert stale.status_code == 409

    cleared = await client.post(url, json={"assignee_id": None, "version": 2}, headers=op.headers)
    assert cleared.status_code == 200
    assert cleared.json()["assignee"] is None


async def test_notes_validation(client: httpx.AsyncClient, factory: Factory) -> None:
    op = await _operator(factory)
    ticket = await factory.ticket()
    url = f"{API}/tickets/{ticket.id}/notes"
    for body in ({"body": ""}, {"body": "   "}, {}, {"body": "x" * 20_001}):
        response = await client.post(url, json=body, headers=op.headers)
        assert response.status_code == 422, body
    missing = await client.post(
        f"{API}/tickets/999999/notes", json={"body": "hi"}, headers=op.headers
    )
    assert missing.status_code == 404


async def test_activity_records_who_did_what_per_ticket_and_globally(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    op = await _operator(factory)
    first, second = await factory.ticket(), await factory.ticket()
    await client.post(
        f"{API}/tickets/{first.id}/state",
        json={"state": "NEEDS_ACTION", "version": 1},
        headers=op.headers,
    )
    await client.post(
        f"{API}/tickets/{first.id}/notes", json={"body": "called them"}, headers=op.headers
    )
    await client.post(
        f"{API}/tickets/{second.id}/assign", json={"assignee_id": op.user.id}, headers=op.headers
    )

    per_ticket = (await client.get(f"{API}/tickets/{first.id}/activity", headers=op.headers)).json()
    assert [e["action"] for e in per_ticket["items"]] == ["note.added", "ticket.state_changed"]
    entry = per_ticket["items"][1]
    assert entry["actor"]["type"] == "token"
    assert entry["actor"]["user_id"] == op.user.id
    assert entry["actor"]["token_id"] is not None
    assert entry["details"]["from"] == "NEW"

    everything = (
        await client.get(f"{API}/activity", params={"limit": 2}, headers=op.headers)
    ).json()
    assert [e["action"] for e in everything["items"]] == ["ticket.assigned", "note.added"]
    rest = (
        await client.get(
            f"{API}/activity", params={"cursor": everything["next_cursor"]}, headers=op.headers
        )
    ).json()
    assert rest["items"][0]["action"] == "ticket.state_changed"
    only = (
        await client.get(f"{API}/activity", params={"ticket_id": second.id}, headers=op.headers)
    ).json()
    assert [e["action"] for e in only["items"]] == ["ticket.assigned"]
    missing = await client.get(f"{API}/tickets/999999/activity", headers=op.headers)
    assert missing.status_code == 404


async def test_responses_carry_a_request_id(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-ID": "edge-abc.123"})
    assert echoed.headers["x-request-id"] == "edge-abc.123"
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_unknown_routes_and_methods_answer_in_the_error_format(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert _error(missing)["code"] == "not_found"
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    assert _error(wrong_method)["code"] == "method_not_allowed"


async def test_nul_characters_and_out_of_range_cursors_are_422_not_500(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """PostgreSQL rejects NUL in text and 64-bit ids; both must be refused before the database."""
    op = await _operator(factory)
    ticket = await factory.ticket()
    for query in ("q=abc%00def", "category=%00", "q=%2500ok"):
        response = await client.get(f"{API}/tickets?{query}", headers=op.headers)
        if query == "q=%2500ok":  # a literal "%00" text, which is fine
            assert response.status_code == 200
            continue
        assert response.status_code == 422, (query, response.text)
        assert "NUL" in _error(response)["message"]
    activity = await client.get(f"{API}/activity?action=x%00", headers=op.headers)
    assert activity.status_code == 422
    note = await client.post(
        f"{API}/tickets/{ticket.id}/notes", json={"body": "a\u0000b"}, headers=op.headers
    )
    assert note.status_code == 422
    assert "NUL" in _error(note)["message"]
    reason = await client.post(
        f"{API}/tickets/{ticket.id}/state",
        json={"state": "DONE", "version": 1, "reason": "\u0000"},
        headers=op.headers,
    )
    assert reason.status_code == 422
    for payload in ({"id": 10**12}, {"id": -5}, {"id": True}, {"id": 0}):
        cursor = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        response = await client.get(
            f"{API}/activity", params={"cursor": cursor}, headers=op.headers
        )
        assert response.status_code == 422, (payload, response.text)
    huge = {"sort": "-created_at", "value": "2026-01-01T00:00:00+00:00", "id": 2**40}
    cursor = base64.urlsafe_b64encode(json.dumps(huge).encode()).decode().rstrip("=")
    response = await client.get(f"{API}/tickets", params={"cursor": cursor}, headers=op.headers)
    assert response.status_code == 422


async def test_the_published_sort_values_are_exactly_the_ones_the_service_accepts(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    viewer = await factory.principal(Role.VIEWER)
    document = (await client.get("/openapi.json", headers=viewer.headers)).json()
    parameters = document["paths"]["/api/v1/tickets"]["get"]["parameters"]
    sort = next(p for p in parameters if p["name"] == "sort")
    assert set(sort["schema"]["enum"]) == set(SORTS)
    assert sort["schema"]["default"] == DEFAULT_SORT
