"""Opaque keyset cursors.

A cursor names the last row a client saw (its sort value and id), so the next page starts strictly
after it: no row is repeated or skipped when rows are added meanwhile, and deep pages cost the same
as the first (no OFFSET scan).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeGuard, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from communication_agent.services.errors import InvalidInputError

T = TypeVar("T")

MAX_ID = 2_147_483_647
_BAD_CURSOR = (
    "The cursor is not valid; pass back the next_cursor value of a previous page unchanged."
)


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(_BAD_CURSOR) from exc
    if not isinstance(payload, dict):
        raise InvalidInputError(_BAD_CURSOR)
    return payload


def encode_id_cursor(last_id: int) -> str:
    return _encode({"id": last_id})


def _valid_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def decode_id_cursor(cursor: str) -> int:
    last_id = _decode(cursor).get("id")
    if not _valid_id(last_id):
        raise InvalidInputError(_BAD_CURSOR)
    return last_id


def encode_keyset_cursor(sort: str, value: datetime, last_id: int) -> str:
    return _encode({"sort": sort, "value": value.isoformat(), "id": last_id})


def decode_keyset_cursor(cursor: str, sort: str) -> tuple[datetime, int]:
    payload = _decode(cursor)
    if payload.get("sort") != sort:
        raise InvalidInputError(
            "The cursor belongs to a different sort order; keep `sort` unchanged while paging."
        )
    last_id = payload.get("id")
    try:
        value = datetime.fromisoformat(str(payload.get("value")))
    except ValueError as exc:
        raise InvalidInputError(_BAD_CURSOR) from exc
    if not _valid_id(last_id) or value.tzinfo is None:
        raise InvalidInputError(_BAD_CURSOR)
    return value, last_id


def after_keyset(
    column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[int],
    value: datetime,
    last_id: int,
    *,
    descending: bool,
) -> ColumnElement[bool]:
    """The rows that come strictly after `(value, last_id)` in `(column, id)` order."""
    if descending:
        return or_(column < value, and_(column == value, id_column < last_id))
    return or_(column > value, and_(column == value, id_column > last_id))


async def newest_first_page(
    session: AsyncSession,
    query: Select[T],
    id_column: InstrumentedAttribute[int],
    *,
    cursor: str | None,
    limit: int,
) -> Page[T]:
    """One page of `query` (already filtered) newest id first. The cursor is the last id seen,
    so pages never repeat or skip rows even while new ones are being written."""
    query = query.order_by(id_column.desc())
    if cursor is not None:
        query = query.where(id_column < decode_id_cursor(cursor))
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    items = rows[:limit]
    if len(rows) <= limit:
        return Page(items=items, next_cursor=None)
    return Page(items=items, next_cursor=encode_id_cursor(getattr(items[-1], id_column.key)))
