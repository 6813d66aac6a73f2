"""Schema management: upgrade to the newest revision and tell whether a database is current.

The application refuses to serve a schema it does not know (see `ensure_schema`), because running
new code on an old schema fails later and more confusingly, in the middle of a request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_COMMAND = "commagent db upgrade"


class SchemaNotCurrentError(Exception):
    """The database schema is missing or older (or newer) than this code expects."""


class MissingPrerequisiteError(Exception):
    """A migration needs something of the database server that only an administrator can
    grant (an extension); the message names the statement to run."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    known: bool = True  # False: the database was migrated by a newer version of commagent

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.is_current:
            return f"schema is current (revision {self.head})"
        if self.current is None:
            return f"database has no schema yet; run `{UPGRADE_COMMAND}` to create it"
        if not self.known:
            return (
                f"database schema is at revision {self.current}, which this version of "
                f"commagent does not know (it expects {self.head}); a newer version migrated "
                "it, so run that version or restore a backup"
            )
        return (
            f"database schema is at revision {self.current} but this version of commagent "
            f"needs {self.head}; run `{UPGRADE_COMMAND}`"
        )


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


IncludeObject = Callable[[object, str | None, str, bool, object | None], bool]


def objects_for(dialect_name: str) -> IncludeObject:
    """Alembic's `include_object` for comparing a `dialect_name` database with the models: an
    index the models declare for another dialect only (`ddl_if`, the PostgreSQL trigram
    indexes) is not expected there."""

    def include(
        obj: object, _name: str | None, type_: str, reflected: bool, _compare_to: object | None
    ) -> bool:
        if type_ != "index" or reflected:
            return True
        condition = getattr(obj, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect_name)

    return include


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head and every revision the package ships. Read once per process: loading the
    scripts takes tens of milliseconds, and `/readyz` asks on every probe."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in the package")
    return head, frozenset(rev.revision for rev in scripts.walk_revisions())


def head_revision() -> str:
    return _revisions()[0]


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        current = await connection.run_sync(_current)
    head, revisions = _revisions()
    return SchemaStatus(current=current, head=head, known=current is None or current in revisions)


async def _run(engine: AsyncEngine, step: Callable[[Config, str], None], revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        step(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaStatus:
    await _run(engine, command.upgrade, revision)
    return await schema_status(engine)


async def downgrade(engine: AsyncEngine, revision: str) -> SchemaStatus:
    """Step the schema back to `revision` (`base` removes everything this project created)."""
    await _run(engine, command.downgrade, revision)
    return await schema_status(engine)


async def ensure_schema(engine: AsyncEngine, *, auto_migrate: bool) -> SchemaStatus:
    """Migrate when allowed, otherwise raise `SchemaNotCurrentError` naming the command to run."""
    status = await schema_status(engine)
    if status.is_current:
        return status
    if auto_migrate and status.known:
        return await upgrade(engine)
    raise SchemaNotCurrentError(status.describe())
