import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import ApiToken, User
from communication_agent.models.enums import ActorType, Role
from communication_agent.services import auth, users
from communication_agent.services.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
)
from tests.factories import PASSWORD, TEST_ACTOR, Factory


async def test_passwords_are_stored_as_argon2id_hashes(
    factory: Factory, session: AsyncSession
) -> None:
    principal = await factory.principal()
    user = await session.get(User, principal.user.id)
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert auth.verify_password(user.password_hash, PASSWORD)
    assert not auth.verify_password(user.password_hash, PASSWORD + "x")


async def test_password_login_does_not_say_which_part_was_wrong(
    factory: Factory, session: AsyncSession
) -> None:
    principal = await factory.principal()
    user = await auth.authenticate_password(session, principal.user.email.upper(), PASSWORD)
    assert user.id == principal.user.id
    assert user.last_login_at is not None
    for email, password in ((principal.user.email, "wrong password"), ("nobody@x.org", PASSWORD)):
        with pytest.raises(AuthenticationError, match="Unknown email or wrong password"):
            await auth.authenticate_password(session, email, password)


async def test_tokens_are_stored_only_as_digests(factory: Factory, session: AsyncSession) -> None:
    principal = await factory.principal(Role.VIEWER)
    [token] = await users.list_tokens(session, principal.user.email)
    assert token.token_digest == auth.token_digest(principal.token)
    assert principal.token not in (token.token_digest, token.prefix)
    assert principal.token.startswith(token.prefix)
    actor = await auth.authenticate_token(session, principal.token)
    assert (actor.type, actor.user_id, actor.token_id, actor.role) == (
        ActorType.TOKEN,
        principal.user.id,
        token.id,
        Role.VIEWER,
    )


async def test_revoked_tokens_and_deactivated_users_are_refused(
    factory: Factory, session: AsyncSession
) -> None:
    revoked = await factory.principal()
    [token] = await users.list_tokens(session, revoked.user.email)
    await users.revoke_token(session, TEST_ACTOR, token.id)
    with pytest.raises(AuthenticationError):
        await auth.authenticate_token(session, revoked.token)
    # End the failed unit of work, as a request does; on SQLite an open transaction keeps reading
    # its snapshot and would not see the user the next line creates in another session.
    await session.rollback()

    deactivated = await factory.principal()
    user = await session.get(User, deactivated.user.id)
    assert user is not None
    user.is_active = False
    await session.commit()
    with pytest.raises(AuthenticationError):
        await auth.authenticate_token(session, deactivated.token)
    with pytest.raises(AuthenticationError):
        await auth.authenticate_token(session, "cat_" + "x" * 43)


async def test_token_use_is_timestamped(factory: Factory, session: AsyncSession) -> None:
    principal = await factory.principal()
    await auth.authenticate_token(session, principal.token)
    [token] = await users.list_tokens(session, principal.user.email)
    fresh = await session.get(ApiToken, token.id, populate_existing=True)
    assert fresh is not None
    assert fresh.last_used_at is not None


async def test_user_creation_rules(session: AsyncSession) -> None:
    user = await users.create_user(
        session, TEST_ACTOR, email="  Mixed.Case@Example.COM ", password=PASSWORD, role=Role.ADMIN
    )
    assert user.email == "mixed.case@example.com"
    with pytest.raises(ConflictError, match="already exists"):
        await users.create_user(
            session, TEST_ACTOR, email="mixed.case@example.com", password=PASSWORD, role=Role.ADMIN
        )
    with pytest.raises(InvalidInputError, match="too short"):
        await users.create_user(
            session, TEST_ACTOR, email="new@example.com", password="short", role=Role.VIEWER
        )
    with pytest.raises(InvalidInputError, match="not a valid email"):
        await users.create_user(
            session, TEST_ACTOR, email="not-an-email", password=PASSWORD, role=Role.VIEWER
        )
