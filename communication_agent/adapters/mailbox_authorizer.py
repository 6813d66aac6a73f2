"""The port for connecting a mailbox through its provider's consent screen (OAuth 2.0 + PKCE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Grant:
    """What a completed consent yields: whose mailbox it is and the long-lived credential."""

    address: str
    refresh_token: str


class MailboxAuthorizer(Protocol):
    def new_code_verifier(self) -> str: ...

    def authorization_url(self, *, redirect_uri: str, state: str, code_verifier: str) -> str: ...

    async def complete(self, *, code: str, redirect_uri: str, code_verifier: str) -> Grant: ...
