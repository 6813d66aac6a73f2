"""Google OAuth 2.0 for Gmail: the consent URL (with PKCE), code exchange and token refresh.

authlib supplies the protocol (grant URI, PKCE S256 challenge, token request bodies, token
expiry); requests go through our own httpx client, because authlib's httpx integration is
deprecated in favour of a second HTTP stack we do not otherwise need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from communication_agent.adapters.mail_provider import (
    ProviderUnavailableError,
    ReauthorisationRequiredError,
)

# Least privilege for what we do: read mail, send replies, manage our labels. Applying labels to
# messages would need gmail.modify (which replaces gmail.readonly); we do not do that yet.
GMAIL_SCOPES = (
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.labels",
)
TESTING_APP_HINT = (
    "Google expires refresh tokens after 7 days for OAuth apps left in 'Testing' status; publish "
    "the app (or reconnect weekly)."
)
REFRESH_LEEWAY_SECONDS = 60


class OAuthConfigurationError(Exception):
    """Gmail is used without COMMAGENT_GOOGLE_CLIENT_ID / _SECRET."""


@dataclass(frozen=True)
class GoogleOAuthClient:
    client_id: str
    client_secret: str
    auth_url: str
    token_url: str

    @staticmethod
    def new_code_verifier() -> str:
        return str(generate_token(64))

    def authorization_url(self, *, redirect_uri: str, state: str, code_verifier: str) -> str:
        return str(
            prepare_grant_uri(
                self.auth_url,
                self.client_id,
                "code",
                redirect_uri=redirect_uri,
                scope=" ".join(GMAIL_SCOPES),
                state=state,
                code_challenge=create_s256_code_challenge(code_verifier),
                code_challenge_method="S256",
                access_type="offline",  # we need a refresh token
                prompt="consent",  # and Google only re-issues one on consent
                include_granted_scopes="true",
            )
        )

    async def exchange_code(
        self, http: httpx.AsyncClient, *, code: str, redirect_uri: str, code_verifier: str
    ) -> OAuth2Token:
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        return await self._token_request(http, body)

    async def refresh(self, http: httpx.AsyncClient, refresh_token: str) -> OAuth2Token:
        body = prepare_token_request("refresh_token", refresh_token=refresh_token)
        token = await self._token_request(http, body)
        token.setdefault("refresh_token", refresh_token)  # Google keeps the same one
        return token

    async def _token_request(self, http: httpx.AsyncClient, body: str) -> OAuth2Token:
        try:
            response = await http.post(
                self.token_url,
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                auth=(self.client_id, self.client_secret),
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(
                f"Google's token endpoint is unreachable: {exc}"
            ) from exc
        payload = _json(response)
        if response.status_code == 200 and "access_token" in payload:
            return OAuth2Token.from_dict(payload)
        error = str(payload.get("error", f"HTTP {response.status_code}"))
        description = str(payload.get("error_description", ""))
        if error == "invalid_grant":
            raise ReauthorisationRequiredError(
                f"Google refused the stored grant (invalid_grant: {description}). "
                + TESTING_APP_HINT
            )
        if error in {"invalid_client", "unauthorized_client"}:
            raise ReauthorisationRequiredError(
                f"Google refused the OAuth client ({error}: {description}); check "
                "COMMAGENT_GOOGLE_CLIENT_ID and COMMAGENT_GOOGLE_CLIENT_SECRET."
            )
        raise ProviderUnavailableError(f"Google's token endpoint answered {error}: {description}")


class AccessTokens:
    """The current access token for one mailbox: refreshed before expiry and on demand (401)."""

    def __init__(
        self, oauth: GoogleOAuthClient, refresh_token: str, cached: OAuth2Token | None = None
    ):
        self.oauth = oauth
        self.refresh_token = refresh_token
        self.token = cached

    async def current(self, http: httpx.AsyncClient, *, force_refresh: bool = False) -> str:
        if (
            force_refresh
            or self.token is None
            or self.token.is_expired(leeway=REFRESH_LEEWAY_SECONDS)
        ):
            self.token = await self.oauth.refresh(http, self.refresh_token)
        return str(self.token["access_token"])


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
