"""Declarative base with a constraint naming convention, so migrations are stable on both
engines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Index, MetaData, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines.

    SQLite has no timezone type and returns naive values; this type stores UTC and always hands
    back an aware datetime, so comparisons and JSON output are identical on SQLite and PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def trigram_index(name: str, *columns: str) -> Index:
    """A PostgreSQL trigram (GIN `gin_trgm_ops`) index over text columns, which lets
    `ILIKE '%words%'` use an index instead of reading every row (the ticket search).

    PostgreSQL only: SQLite would build a plain B-tree over the whole text, which no search can
    use. `communication_agent.core.migrations.objects_for` skips it when comparing a SQLite
    schema with the models. Migration 0008 creates the `pg_trgm` extension it needs.
    """
    ops = dict.fromkeys(columns, "gin_trgm_ops")
    index = Index(name, *columns, postgresql_using="gin", postgresql_ops=ops)
    return index.ddl_if(dialect="postgresql")
