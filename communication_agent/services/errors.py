"""Typed domain errors. Services raise them; `api/errors.py` maps each to one HTTP status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class. `code` is a stable machine-readable name, the message is for humans."""

    code = "domain_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFoundError(DomainError):
    code = "not_found"


class InvalidInputError(DomainError):
    """Well-formed but unacceptable input (an unknown assignee, a malformed cursor)."""

    code = "invalid_input"


class ConflictError(DomainError):
    code = "conflict"


class InvalidTransitionError(ConflictError):
    code = "invalid_transition"


class StaleVersionError(ConflictError):
    code = "stale_version"


class AuthenticationError(DomainError):
    code = "not_authenticated"


class PermissionDeniedError(DomainError):
    code = "forbidden"


class TooManyAttemptsError(DomainError):
    """A limit on repeated attempts (failed sign-ins); `retry_after` says when to try again."""

    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after
