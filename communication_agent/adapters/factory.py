"""Choosing the concrete mail provider for a mailbox: the one place that knows them all."""

from __future__ import annotations

from pathlib import Path

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token

from communication_agent.adapters.gmail import GmailProvider
from communication_agent.adapters.gmail_authorizer import GmailAuthorizer
from communication_agent.adapters.google_oauth import AccessTokens, GoogleOAuthClient
from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.adapters.local_folder import LocalFolderProvider
from communication_agent.adapters.mail_provider import (
    MailProvider,
    ProviderError,
    ProviderOpener,
    ReauthorisationRequiredError,
)
from communication_agent.adapters.mailbox_authorizer import MailboxAuthorizer
from communication_agent.core.config import Settings
from communication_agent.core.logging import scrubber
from communication_agent.models import Mailbox
from communication_agent.models.enums import MailProvider as ProviderKind
from communication_agent.services.credentials import CredentialsUnreadableError, decrypt_credentials


def google_oauth_client(settings: Settings) -> GoogleOAuthClient:
    if not settings.google_client_id or settings.google_client_secret is None:
        raise ProviderError(
            "Gmail needs COMMAGENT_GOOGLE_CLIENT_ID and COMMAGENT_GOOGLE_CLIENT_SECRET "
            "(an OAuth client of type 'Web application' in the Google Cloud console)."
        )
    scrubber.register(settings.google_client_secret.get_secret_value())  # never in a log line
    return GoogleOAuthClient(
        client_id=settings.google_client_id,
        client_secret=settings.google_client_secret.get_secret_value(),
        auth_url=settings.google_auth_url,
        token_url=settings.google_token_url,
    )


def gmail_authorizer(settings: Settings) -> MailboxAuthorizer:
    return GmailAuthorizer(google_oauth_client(settings), settings.gmail_api_url)


def provider_opener(
    settings: Settings, secret_key: str, retry: RetryPolicy | None = None
) -> ProviderOpener:
    """A `ProviderOpener` bound to this process's settings and secret key.

    Access tokens live only in this process's memory (keyed by mailbox), so consecutive syncs
    reuse one until it nears expiry; only the refresh token is stored, encrypted.
    """
    access_tokens: dict[int, OAuth2Token] = {}

    async def open_provider(mailbox: Mailbox) -> MailProvider:
        if mailbox.provider == ProviderKind.LOCAL.value:
            path = mailbox.config.get("path")
            if not path:
                raise ProviderError(f"mailbox {mailbox.name} has no folder configured")
            return LocalFolderProvider(Path(path), mailbox.address)
        if mailbox.provider == ProviderKind.GMAIL.value:
            return _gmail(mailbox)
        raise ProviderError(
            f"mailbox {mailbox.name} uses the unsupported provider {mailbox.provider!r}"
        )

    def _gmail(mailbox: Mailbox) -> GmailProvider:
        if mailbox.credentials is None:
            raise ReauthorisationRequiredError("the mailbox has no stored Google authorisation")
        try:
            refresh_token = str(
                decrypt_credentials(secret_key, mailbox.credentials)["refresh_token"]
            )
        except (CredentialsUnreadableError, KeyError) as exc:
            raise ReauthorisationRequiredError(str(exc)) from exc
        tokens = _CachedTokens(
            google_oauth_client(settings), refresh_token, access_tokens, mailbox.id
        )
        return GmailProvider(
            api_url=settings.gmail_api_url,
            tokens=tokens,
            query=settings.gmail_query,
            window_days=settings.gmail_sync_window_days,
            page_size=settings.gmail_page_size,
            retry=retry,
        )

    return open_provider


class _CachedTokens(AccessTokens):
    """AccessTokens whose current token is shared through the per-process cache."""

    def __init__(
        self, oauth: GoogleOAuthClient, refresh_token: str, cache: dict[int, OAuth2Token], key: int
    ):
        super().__init__(oauth, refresh_token, cache.get(key))
        self._cache = cache
        self._key = key

    async def current(self, http: httpx.AsyncClient, *, force_refresh: bool = False) -> str:
        value = await super().current(http, force_refresh=force_refresh)
        if self.token is not None:
            self._cache[self._key] = self.token
        return value
