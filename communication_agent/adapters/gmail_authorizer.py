"""Connecting a Gmail mailbox: consent URL, code exchange, and the address from the profile."""

from __future__ import annotations

import httpx

from communication_agent.adapters.google_oauth import GoogleOAuthClient
from communication_agent.adapters.mail_provider import ProviderError
from communication_agent.adapters.mailbox_authorizer import Grant
from communication_agent.adapters.tls import client_tls


class GmailAuthorizer:
    def __init__(self, oauth: GoogleOAuthClient, api_url: str, timeout: float = 30.0) -> None:
        self.oauth = oauth
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def new_code_verifier(self) -> str:
        return self.oauth.new_code_verifier()

    def authorization_url(self, *, redirect_uri: str, state: str, code_verifier: str) -> str:
        return self.oauth.authorization_url(
            redirect_uri=redirect_uri, state=state, code_verifier=code_verifier
        )

    async def complete(self, *, code: str, redirect_uri: str, code_verifier: str) -> Grant:
        async with httpx.AsyncClient(timeout=self.timeout, verify=client_tls()) as http:
            token = await self.oauth.exchange_code(
                http, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
            )
            refresh_token = token.get("refresh_token")
            if not refresh_token:
                raise ProviderError(
                    "Google did not return a refresh token. Remove this app's access in the Google "
                    "account's security settings, then connect again."
                )
            response = await http.get(
                f"{self.api_url}/users/me/profile",
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
        if response.status_code != 200:
            raise ProviderError(
                f"Gmail refused to show the mailbox's profile (HTTP {response.status_code})"
            )
        return Grant(
            address=str(response.json()["emailAddress"]).lower(), refresh_token=str(refresh_token)
        )
