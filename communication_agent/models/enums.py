"""Closed vocabularies shared by entities, schemas and services.

They are stored as plain strings (not database enum types) so that adding a value is a code change,
not a migration that locks a table on PostgreSQL.
"""

from enum import StrEnum


class TicketState(StrEnum):
    NEW = "NEW"
    NEEDS_ACTION = "NEEDS_ACTION"
    WAITING_OTHERS = "WAITING_OTHERS"
    DONE = "DONE"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Role(StrEnum):
    """Roles are ordered: each one can do everything the one before it can."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def includes(self, other: "Role") -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DraftStatus(StrEnum):
    PROPOSED = "proposed"
    EDITED = "edited"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    DISCARDED = "discarded"
    SUPERSEDED = "superseded"  # a newer customer message made this proposal obsolete
    FAILED = "failed"


class ActorType(StrEnum):
    USER = "user"
    TOKEN = "token"  # noqa: S105 (an actor kind, not a credential)
    SYSTEM = "system"


class TokenState(StrEnum):
    """Whether a mailbox's stored authorisation works: `none` for providers without one."""

    NONE = "none"
    OK = "ok"
    NEEDS_REAUTH = "needs_reauth"


class MailProvider(StrEnum):
    GMAIL = "gmail"
    LOCAL = "local"
