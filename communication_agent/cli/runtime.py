"""Running service calls from the command line: settings, database, and errors as clear messages.

Every failure a user can cause or fix (bad configuration, unmigrated schema, unreachable database,
a rule broken) ends the command with one readable line on stderr and exit status 1, never a
traceback, and never with a secret in it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from communication_agent.core.config import ConfigurationError, Settings
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.logging import configure_logging, scrubber
from communication_agent.core.migrations import (
    MissingPrerequisiteError,
    SchemaNotCurrentError,
    ensure_schema,
)
from communication_agent.services.errors import DomainError

T = TypeVar("T")
PIPED_WIDTH = 200


def console(*, stderr: bool = False) -> Console:
    """A console that wraps to the terminal, but not when piped (so `| grep` sees whole rows)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else PIPED_WIDTH)


stderr = console(stderr=True)


def fail(message: str) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {scrubber.scrub(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def load_settings() -> Settings:
    try:
        settings = Settings()
        configure_logging(settings.log_level, settings.log_format)
        scrubber.register(settings.database.password)
        if settings.secret_key is not None:
            scrubber.register(settings.secret_key.get_secret_value())
    except ConfigurationError as exc:
        fail(str(exc))
    except ValueError as exc:  # pydantic's ValidationError: names the variable and the problem
        fail(f"invalid configuration: {exc}")
    return settings


def configured(build: Callable[[], T]) -> T:
    """Build something from the configuration, or exit with the line that says what to fix."""
    try:
        return build()
    except ConfigurationError as exc:
        fail(str(exc))


@contextmanager
def reported_errors(settings: Settings) -> Iterator[None]:
    """Turn the errors a user can act on into one clear line each."""
    try:
        yield
    except (
        DomainError,
        ConfigurationError,
        SchemaNotCurrentError,
        MissingPrerequisiteError,
    ) as exc:
        fail(str(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        fail(f"cannot use the database {settings.database_display}: {reason}")


def run_on_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(settings.database, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with reported_errors(settings):
        return asyncio.run(main())
    raise AssertionError("unreachable")  # pragma: no cover  (reported_errors always exits)


def run_service(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Check the schema (migrating the embedded default), then run `work` in one session."""

    async def with_session(engine: AsyncEngine) -> T:
        await ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
        async with create_sessionmaker(engine)() as session:
            return await work(session)

    return run_on_engine(settings, with_session)
