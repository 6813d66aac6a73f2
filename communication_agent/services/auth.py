"""Passwords and API tokens: hashing, issuing, and resolving a presented credential to an actor.

Passwords use argon2id (argon2-cffi's defaults follow RFC 9106's recommendations). API tokens are
random 256-bit values shown once; only their SHA-256 digest is stored (see `ApiToken`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from communication_agent.core.db import begin_write
from communication_agent.models import ApiToken, User
from communication_agent.models.base import utcnow
from communication_agent.models.enums import ActorType, Role
from communication_agent.services.actors import Actor
from communication_agent.services.errors import AuthenticationError

TOKEN_PREFIX = "cat_"  # noqa: S105 (marks our tokens so secret scanners can recognise them)
TOKEN_PREFIX_SHOWN = 12  # enough to tell tokens apart in a list, useless to an attacker
# Recording every use would make every request a write (and, on PostgreSQL, contend on one row
# per busy token); a minute's precision is plenty for "when was this token last used".
LAST_USED_PRECISION = timedelta(minutes=1)
_password_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths cost one argon2 verification and
# response time does not reveal which emails have accounts.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class IssuedToken:
    """The only moment the plaintext exists outside the client: returned once, never stored."""

    token: ApiToken
    plaintext: str


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_token_plaintext() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def actor_for_user(user: User, token: ApiToken | None = None) -> Actor:
    if token is None:
        return Actor(type=ActorType.USER, name=user.email, user_id=user.id, role=Role(user.role))
    return Actor(
        type=ActorType.TOKEN,
        name=f"{user.email}#{token.id}",
        user_id=user.id,
        token_id=token.id,
        role=Role(user.role),
    )


async def authenticate_token(session: AsyncSession, plaintext: str) -> Actor:
    """Resolve a bearer token to its actor, or raise `AuthenticationError`.

    The lookup is by digest (an indexed equality), and the digest comparison afterwards is
    constant-time, so neither leaks how much of a guessed token was right.
    """
    digest = token_digest(plaintext)
    token = await session.scalar(
        select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.token_digest == digest)
    )
    if (
        token is None
        or not hmac.compare_digest(token.token_digest, digest)
        or token.revoked_at is not None
        or not token.user.is_active
    ):
        raise AuthenticationError("The API token is invalid, revoked, or its user is deactivated.")
    actor = actor_for_user(token.user, token)
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        await begin_write(session)
        await session.execute(
            update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
        )
        await session.commit()
    return actor


async def authenticate_password(session: AsyncSession, email: str, password: str) -> User:
    """Check an email and password; the error never says which of the two was wrong."""
    await begin_write(session)
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise AuthenticationError("Unknown email or wrong password.")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise AuthenticationError("Unknown email or wrong password.")
    user.last_login_at = utcnow()
    await session.commit()
    return user
