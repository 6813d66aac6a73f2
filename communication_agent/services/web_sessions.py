"""Console sign-in: password check behind a brute-force limit, sessions, sign-out.

A session is a random 256-bit value in an HttpOnly cookie; the database keeps only its SHA-256
digest (as for API tokens). Every sign-in mints a new value, so a session id planted in a
browser before sign-in (session fixation) is never the one that becomes authenticated.

Failed sign-ins are counted per email and per client address in the database, so the limit
holds across every API process behind a load balancer.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from communication_agent.core.db import begin_write
from communication_agent.models import LoginFailure, User, WebSession
from communication_agent.models.base import utcnow
from communication_agent.services.actors import Actor
from communication_agent.services.auth import actor_for_user, authenticate_password, token_digest
from communication_agent.services.errors import AuthenticationError, TooManyAttemptsError

# A client address may fail this many times more than one email may: an office behind one
# NAT address should not lock itself out because of one forgetful colleague.
ADDRESS_BUDGET_FACTOR = 4
# Writing `last_seen_at` on every page view would make every read a write.
LAST_SEEN_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class LoginLimits:
    max_failures: int
    window: timedelta


@dataclass(frozen=True)
class SignedIn:
    """The cookie value exists only here and in the browser; it is never stored."""

    cookie_value: str
    csrf_token: str
    user: User
    expires_at: datetime


@dataclass(frozen=True)
class ResolvedSession:
    actor: Actor
    csrf_token: str
    user: User


def _keys(email: str, client_address: str | None) -> list[tuple[str, int]]:
    keys = [(f"email:{email}", 1)]
    if client_address:
        keys.append((f"addr:{client_address}", ADDRESS_BUDGET_FACTOR))
    return keys


async def _check_limit(
    session: AsyncSession, keys: list[tuple[str, int]], limits: LoginLimits
) -> None:
    since = utcnow() - limits.window
    for key, factor in keys:
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(LoginFailure.failed_at)).where(
                    LoginFailure.key == key, LoginFailure.failed_at > since
                )
            )
        ).one()
        if count >= limits.max_failures * factor and oldest is not None:
            wait = max(1, int((oldest + limits.window - utcnow()).total_seconds()) + 1)
            minutes = max(1, round(wait / 60))
            raise TooManyAttemptsError(
                f"Too many failed sign-ins; wait about {minutes} minute"
                f"{'s' if minutes != 1 else ''} and try again, or ask an admin to reset your "
                "password.",
                retry_after=wait,
            )


async def _record_failure(
    session: AsyncSession, keys: list[tuple[str, int]], limits: LoginLimits
) -> None:
    await begin_write(session)
    now = utcnow()
    await session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - limits.window))
    session.add_all(LoginFailure(key=key, failed_at=now) for key, _ in keys)
    await session.commit()


async def sign_in(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    client_address: str | None,
    limits: LoginLimits,
    lifetime: timedelta,
) -> SignedIn:
    """Check the password (unless the limit is reached) and open a new session."""
    normalised = email.strip().lower()
    keys = _keys(normalised, client_address)
    await _check_limit(session, keys, limits)
    try:
        user = await authenticate_password(session, normalised, password)
    except AuthenticationError:
        await session.rollback()
        await _record_failure(session, keys, limits)
        raise
    await begin_write(session)
    await session.execute(delete(LoginFailure).where(LoginFailure.key == keys[0][0]))
    cookie_value = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + lifetime
    session.add(
        WebSession(
            token_digest=token_digest(cookie_value),
            user_id=user.id,
            csrf_token=csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )
    await session.commit()
    return SignedIn(cookie_value, csrf_token, user, expires_at)


async def resolve(session: AsyncSession, cookie_value: str) -> ResolvedSession:
    """The signed-in user behind a session cookie, or `AuthenticationError`."""
    digest = token_digest(cookie_value)
    row = await session.scalar(
        select(WebSession)
        .options(joinedload(WebSession.user))
        .where(WebSession.token_digest == digest)
    )
    now = utcnow()
    if (
        row is None
        or not hmac.compare_digest(row.token_digest, digest)
        or row.expires_at <= now
        or not row.user.is_active
    ):
        raise AuthenticationError("Your session has ended; sign in again.")
    if now - row.last_seen_at >= LAST_SEEN_PRECISION:
        await begin_write(session)
        await session.execute(
            update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now)
        )
        await session.commit()
    return ResolvedSession(actor=actor_for_user(row.user), csrf_token=row.csrf_token, user=row.user)


async def sign_out(session: AsyncSession, cookie_value: str) -> None:
    """End the session everywhere: the row goes, so the cookie is worthless even if copied."""
    await begin_write(session)
    await session.execute(
        delete(WebSession).where(WebSession.token_digest == token_digest(cookie_value))
    )
    await session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
    await session.commit()


def csrf_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())
