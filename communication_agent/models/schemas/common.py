"""Shapes shared by every endpoint: errors and pages."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

MAX_DB_INT = 2_147_483_647
# Ids and versions are 32-bit integers in the database; bounding them here turns an absurd value
# into a 422 that says so, instead of a driver overflow error.
DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]


class Schema(BaseModel):
    """Base for response schemas built from entities (`Schema.model_validate(entity)`)."""

    model_config = ConfigDict(from_attributes=True)


NO_NUL_PATTERN = "^[^\\u0000]*$"


def _declare_no_nul(schema: dict[str, Any]) -> None:
    """Publish the NUL rule below in the OpenAPI document, so that clients (and fuzzers) know
    that text fields refuse it, instead of learning it from a 422."""
    for field_schema in schema.get("properties", {}).values():
        for candidate in [field_schema, *field_schema.get("anyOf", [])]:
            if candidate.get("type") == "string" and not {"pattern", "enum", "format"} & set(
                candidate
            ):
                candidate["pattern"] = NO_NUL_PATTERN


class RequestSchema(BaseModel):
    """Base for request bodies: unknown fields are refused, so a typo is an error, not a no-op."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_declare_no_nul
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: object) -> object:
        """PostgreSQL cannot store NUL in text; refuse it here with a message, on both engines."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error name, e.g. `stale_version`.")
    message: str = Field(description="What went wrong and what to do about it, for humans.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


class PageOf(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
