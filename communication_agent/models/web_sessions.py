"""Browser sign-ins for the operator console, and the failed attempts that rate-limit them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from communication_agent.models.base import Base, utcnow
from communication_agent.models.users import User


class WebSession(Base):
    """A signed-in browser. Like API tokens, only the SHA-256 digest of the cookie value is
    stored, so a copy of the database does not let anyone sign in. Sessions live in the
    database (not in a signed cookie) so that sign-out, deactivating a user and an expiry take
    effect at once on every API process."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The synchroniser token every form and htmx request of this session must carry.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    user: Mapped[User] = relationship(lazy="raise")


class LoginFailure(Base):
    """One failed sign-in, by the email tried and by the client address, for the brute-force
    limit. Rows older than the limit's window are deleted as new failures arrive."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)
