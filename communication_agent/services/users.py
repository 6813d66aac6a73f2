"""Creating users and issuing and revoking their API tokens (used by the CLI and, later, the UI)."""

from __future__ import annotations

from collections.abc import Sequence

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.core.db import begin_write
from communication_agent.models import ApiToken, User
from communication_agent.models.base import utcnow
from communication_agent.models.enums import Role
from communication_agent.services import activity
from communication_agent.services.actors import Actor
from communication_agent.services.auth import (
    TOKEN_PREFIX_SHOWN,
    IssuedToken,
    hash_password,
    new_token_plaintext,
    token_digest,
)
from communication_agent.services.errors import ConflictError, InvalidInputError, NotFoundError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def normalise_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInputError(f"{email!r} is not a valid email address: {exc}") from exc


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError(f"The password is longer than {MAX_PASSWORD_LENGTH} characters.")


async def get_user_by_email(session: AsyncSession, email: str) -> User:
    address = normalise_email(email)
    user = await session.scalar(select(User).where(User.email == address))
    if user is None:
        raise NotFoundError(f"No user with email {address}.", email=address)
    return user


async def create_user(
    session: AsyncSession,
    actor: Actor,
    *,
    email: str,
    password: str,
    role: Role,
    display_name: str = "",
) -> User:
    address = normalise_email(email)
    check_password_strength(password)
    await begin_write(session)
    if await session.scalar(select(User.id).where(User.email == address)) is not None:
        raise ConflictError(f"A user with email {address} already exists.", email=address)
    user = User(
        email=address,
        display_name=display_name.strip(),
        password_hash=hash_password(password),
        role=role.value,
    )
    session.add(user)
    await session.flush()
    activity.record(
        session,
        actor,
        "user.created",
        details={"user_id": user.id, "email": address, "role": role.value},
    )
    await session.commit()
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.id))).all()


async def issue_token(
    session: AsyncSession, actor: Actor, *, email: str, name: str = ""
) -> IssuedToken:
    """Issue a new API token for the user with `email`; the plaintext is returned only here."""
    await begin_write(session)
    user = await get_user_by_email(session, email)
    if not user.is_active:
        raise InvalidInputError(f"User {user.email} is deactivated; reactivate them first.")
    plaintext = new_token_plaintext()
    token = ApiToken(
        user_id=user.id,
        name=name.strip(),
        token_digest=token_digest(plaintext),
        prefix=plaintext[:TOKEN_PREFIX_SHOWN],
    )
    session.add(token)
    await session.flush()
    activity.record(
        session,
        actor,
        "token.created",
        details={"token_id": token.id, "user_id": user.id, "name": token.name},
    )
    await session.commit()
    return IssuedToken(token=token, plaintext=plaintext)


async def list_tokens(session: AsyncSession, email: str | None = None) -> Sequence[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if email is not None:
        query = query.where(ApiToken.user_id == (await get_user_by_email(session, email)).id)
    return (await session.scalars(query)).all()


async def revoke_token(session: AsyncSession, actor: Actor, token_id: int) -> ApiToken:
    await begin_write(session)
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(f"API token {token_id} does not exist.", token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        activity.record(session, actor, "token.revoked", details={"token_id": token_id})
        await session.commit()
    return token


async def get_acting_user(session: AsyncSession, actor: Actor) -> User:
    """The user behind a user or token actor (system actors have none)."""
    user = await session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None:
        raise NotFoundError("This request is not made on behalf of a user.")
    return user


async def ensure_user(
    session: AsyncSession, actor: Actor, *, email: str, password: str, role: Role, display_name: str
) -> tuple[User, bool]:
    """Return the user with `email`, creating it first if needed; the flag says whether it was."""
    try:
        return await get_user_by_email(session, email), False
    except NotFoundError:
        user = await create_user(
            session, actor, email=email, password=password, role=role, display_name=display_name
        )
        return user, True
