"""Several Gmail accounts behind one loopback Gmail API, told apart as Google tells them apart.

`GmailTestServer` holds one account. The real API has one base URL for everyone: every call says
`users/me`, and the access token decides whose mail it sees. `GmailAccounts` serves one
`GmailTestServer` app per address on a single port and hands each request to the account that
issued its credentials: the bearer token for API and batch calls, the refresh token or
authorisation code for the token endpoint. Each account keeps its own messages, history, tokens,
faults and request log (`gmail.accounts[address]`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp

from tests.gmail_server import GmailTestServer, _build_app
from tests.loopback_server import LoopbackServer

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class GmailAccounts(LoopbackServer):
    """Start with `with GmailAccounts(["a@x", "b@x"]) as gmail:`; one OAuth client for all."""

    def __init__(self, addresses: Iterable[str]) -> None:
        super().__init__()
        self.accounts: dict[str, GmailTestServer] = {}
        self._apps: list[tuple[GmailTestServer, ASGIApp]] = []
        for address in addresses:
            account = GmailTestServer()  # never started itself: its app runs behind ours
            account.state.address = address
            self.accounts[address] = account
            self._apps.append((account, _build_app(account)))
        base_url = f"http://127.0.0.1:{self.port}"
        self.api_url, self.token_url = f"{base_url}/gmail/v1", f"{base_url}/token"
        self._serve(self._route, interface="asgi3")

    def client_settings(self) -> dict[str, str]:
        """The settings (COMMAGENT_ names, lower case) that point the app at these accounts."""
        first = next(iter(self.accounts.values()))
        return {
            **first.client_settings(),
            "gmail_api_url": self.api_url,
            "google_token_url": self.token_url,
        }

    def calls(self, route: str) -> int:
        return sum(account.calls(route) for account in self.accounts.values())

    async def _route(self, scope: Message, receive: Receive, send: Any) -> None:
        if scope["path"] == "/token":
            body = await _read_body(receive)
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            account = self._owner(
                lambda a: (
                    form.get("refresh_token") in a.state.refresh_tokens
                    or form.get("code") in a.state.auth_codes
                )
            )
            receive = _replay(body, receive)
        else:
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ").strip()
            account = self._owner(lambda a: token in a.state.access_tokens)
        await account(scope, receive, send)

    def _owner(self, issued: Callable[[GmailTestServer], bool]) -> ASGIApp:
        """The app of the account that issued the credentials (the first one answers the rest,
        with the 401 or `invalid_grant` any account would give)."""
        return next((app for account, app in self._apps if issued(account)), self._apps[0][1])


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body over once, then defers to the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
