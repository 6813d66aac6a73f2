"""Request dependencies as annotated types, so every route's signature shows its authorisation."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.adapters.mail_provider import ProviderOpener
from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.core.config import Settings
from communication_agent.models.enums import Role
from communication_agent.models.schemas.common import MAX_DB_INT
from communication_agent.services import web_sessions
from communication_agent.services.actors import Actor
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.auth import authenticate_token
from communication_agent.services.errors import AuthenticationError, PermissionDeniedError

SESSION_COOKIE = "ca_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfError(PermissionDeniedError):
    code = "csrf_failed"


def csrf_refused() -> CsrfError:
    return CsrfError(
        "This request did not carry the console's CSRF token, so it was refused: reload the "
        "page and try again (API clients: send the token in the X-CSRF-Token header, or use a "
        "bearer token)."
    )


_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `commagent tokens create EMAIL`.",
)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """For services that run several units of work in one call (a sync commits per page)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


def get_provider_opener(request: Request) -> ProviderOpener:
    opener: ProviderOpener = request.app.state.provider_opener
    return opener


ProviderOpenerDep = Annotated[ProviderOpener, Depends(get_provider_opener)]


def get_reasoning_model(request: Request) -> ReasoningModel:
    model: ReasoningModel = request.app.state.reasoning_model
    return model


def get_assistant_config(request: Request) -> AssistantConfig:
    config: AssistantConfig = request.app.state.assistant_config
    return config


ReasoningModelDep = Annotated[ReasoningModel, Depends(get_reasoning_model)]
AssistantConfigDep = Annotated[AssistantConfig, Depends(get_assistant_config)]


async def get_current_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """A bearer token, or the console's session cookie (so the console can call the API, and
    `/docs` works in a signed-in browser). A cookie is sent by the browser on its own, so a
    state-changing call made with one must also carry the session's CSRF token."""
    if credentials is not None:
        return await authenticate_token(session, credentials.credentials)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        resolved = await web_sessions.resolve(session, cookie)
        if request.method not in SAFE_METHODS and not web_sessions.csrf_matches(
            resolved.csrf_token, request.headers.get(CSRF_HEADER)
        ):
            raise csrf_refused()
        return resolved.actor
    raise AuthenticationError(
        "Authentication required: send `Authorization: Bearer <token>` "
        "(create a token with `commagent tokens create EMAIL`)."
    )


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def require_role(role: Role) -> Callable[[Actor], Coroutine[Any, Any, Actor]]:
    async def check(actor: CurrentActor) -> Actor:
        if actor.role is None or not actor.role.includes(role):
            have = actor.role.value if actor.role else "no role"
            raise PermissionDeniedError(
                f"This needs the {role.value} role; you have {have}.",
                required_role=role.value,
            )
        return actor

    return check


OperatorActor = Annotated[Actor, Depends(require_role(Role.OPERATOR))]
AdminActor = Annotated[Actor, Depends(require_role(Role.ADMIN))]


async def optional_actor(request: Request) -> Actor | None:
    """The caller when its credentials are good, else None (never an error): for the public
    routes that show more to someone signed in. Call it only once the database answers."""
    credentials = await _bearer(request)
    if credentials is None and not request.cookies.get(SESSION_COOKIE):
        return None
    async with request.app.state.sessionmaker() as session:
        try:
            return await get_current_actor(request, session, credentials)
        except (AuthenticationError, PermissionDeniedError):
            return None


async def require_metrics_reader(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """An admin (token or console session), or a scraper with COMMAGENT_METRICS_TOKEN."""
    settings: Settings = request.app.state.settings
    scraper_token = settings.metrics_token
    if (
        scraper_token is not None
        and credentials is not None
        and hmac.compare_digest(
            credentials.credentials.encode(), scraper_token.get_secret_value().encode()
        )
    ):
        return
    await require_role(Role.ADMIN)(await get_current_actor(request, session, credentials))


MetricsReader = Annotated[None, Depends(require_metrics_reader)]
LOGGED_PATH_IDS = ("ticket_id", "draft_id", "mailbox_id", "message_id")
MAX_ID_DIGITS = 10


async def bind_log_context(request: Request) -> None:
    """Put the ids in the path (ticket, draft, mailbox, message) on every log line of the
    request; `RequestIdMiddleware` unbinds them when the request ends."""
    ids = {
        name: int(value)
        for name, value in request.path_params.items()
        if name in LOGGED_PATH_IDS and str(value).isdigit() and len(str(value)) <= MAX_ID_DIGITS
    }
    if ids:
        structlog.contextvars.bind_contextvars(**ids)


TicketId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The ticket's id.")]
