"""Connecting a Gmail mailbox through Google's consent screen, safely.

The authorisation-code flow with PKCE: the `state` sent to Google is signed (it names the admin
who started and a nonce, and expires after ten minutes), and the PKCE verifier never leaves our
side: it travels in a separate signed, HttpOnly cookie bound to the same nonce. A callback with a
forged, expired or foreign state, or from another browser, changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.adapters.mail_provider import ProviderError
from communication_agent.adapters.mailbox_authorizer import MailboxAuthorizer
from communication_agent.models import Mailbox
from communication_agent.services import mailboxes
from communication_agent.services.actors import Actor
from communication_agent.services.errors import InvalidInputError

STATE_MAX_AGE_SECONDS = 600
COOKIE_NAME = "commagent_gmail_oauth"


@dataclass(frozen=True)
class ConnectionStart:
    url: str
    cookie: str


def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=f"commagent {purpose}")


def begin_connection(
    authorizer: MailboxAuthorizer, secret_key: str, *, user_id: int, redirect_uri: str
) -> ConnectionStart:
    nonce = secrets.token_urlsafe(16)
    verifier = authorizer.new_code_verifier()
    state = _serializer(secret_key, "gmail oauth state").dumps({"n": nonce, "u": user_id})
    cookie = _serializer(secret_key, "gmail oauth verifier").dumps({"n": nonce, "v": verifier})
    url = authorizer.authorization_url(
        redirect_uri=redirect_uri, state=state, code_verifier=verifier
    )
    return ConnectionStart(url=url, cookie=cookie)


def _load(secret_key: str, purpose: str, value: str) -> dict[str, Any]:
    try:
        data = _serializer(secret_key, purpose).loads(value, max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired as exc:
        raise InvalidInputError(
            "The connection attempt expired; start connecting Gmail again."
        ) from exc
    except BadSignature as exc:
        raise InvalidInputError(
            "The connection attempt is not valid; start connecting Gmail again."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInputError(
            "The connection attempt is not valid; start connecting Gmail again."
        )
    return data


async def complete_connection(
    session: AsyncSession,
    actor: Actor,
    authorizer: MailboxAuthorizer,
    secret_key: str,
    *,
    code: str | None,
    state: str | None,
    cookie: str | None,
    error: str | None,
    redirect_uri: str,
) -> Mailbox:
    if error:
        raise InvalidInputError(f"Google did not grant access ({error}); nothing was changed.")
    if not code or not state:
        raise InvalidInputError(
            "The callback lacks `code` or `state`; start connecting Gmail again."
        )
    if not cookie:
        raise InvalidInputError(
            "The connection cookie is missing: finish connecting in the browser that started it."
        )
    signed_state = _load(secret_key, "gmail oauth state", state)
    verifier = _load(secret_key, "gmail oauth verifier", cookie)
    if signed_state.get("n") != verifier.get("n") or signed_state.get("u") != actor.user_id:
        raise InvalidInputError("This callback belongs to another connection attempt; start again.")
    return await connect_with_code(
        session,
        actor,
        authorizer,
        secret_key,
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=str(verifier["v"]),
    )


async def connect_with_code(
    session: AsyncSession,
    actor: Actor,
    authorizer: MailboxAuthorizer,
    secret_key: str,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> Mailbox:
    """Exchange the code (network first, outside any transaction), then store the mailbox."""
    try:
        grant = await authorizer.complete(
            code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
    except ProviderError as exc:
        raise InvalidInputError(f"Connecting Gmail failed: {exc}") from exc
    return await mailboxes.connect_gmail(
        session,
        actor,
        address=grant.address,
        refresh_token=grant.refresh_token,
        secret_key=secret_key,
    )
