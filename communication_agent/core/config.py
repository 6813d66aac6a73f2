"""One typed settings object, read from `COMMAGENT_*` environment variables and an optional `.env`.

Secrets are `SecretStr` so that a stray `repr()` or log line never shows them. The secret key has
one rule that depends on the database: the embedded SQLite default may generate and keep its own
key in the data directory (with a warning), while a PostgreSQL deployment must be given one, because
several processes must share it and a generated key would silently differ between them.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from communication_agent.core.logging import get_logger, scrubber
from communication_agent.models.schemas.reasoning import DEFAULT_CATEGORIES

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)
MIN_SECRET_KEY_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16
STALE_AFTER_INTERVALS = 3  # syncs missed before a mailbox counts as stale


class ConfigurationError(Exception):
    """The configuration cannot work; the message says which variable to fix and how."""


class Settings(BaseSettings):
    """Everything the application reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="COMMAGENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path("data"), description="Where SQLite and generated keys live."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means a SQLite file in the data directory."
    )
    secret_key: SecretStr | None = None
    auto_migrate: bool | None = Field(
        default=None,
        description="Migrate the schema at start-up. Unset: yes on SQLite, no on PostgreSQL.",
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "console", "json"] = "auto"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    sync_interval_seconds: int | None = Field(
        default=None, ge=1, description="Poll every mailbox this often in serve and worker."
    )
    sync_lease_seconds: int = Field(
        default=120, ge=1, le=3600, description="How long a dead syncer blocks its mailbox."
    )
    sync_stale_seconds: int | None = Field(
        default=None,
        ge=1,
        description="A mailbox without a successful sync for this long is stale in /readyz and "
        "/metrics. Unset: 3 x COMMAGENT_SYNC_INTERVAL_SECONDS when that is set, else never.",
    )
    readyz_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, description="/readyz gives the database this long to answer."
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="A bearer token for scrapers: it may read /metrics, nothing else."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Where `commagent worker` serves its metrics."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="`commagent worker` serves metrics on this port."
    )
    gmail_api_url: str = "https://gmail.googleapis.com/gmail/v1"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    gmail_query: str = Field(
        default="(in:inbox -category:promotions -category:social) OR in:sent",
        description="Which mail the first sync reads (Gmail search syntax).",
    )
    gmail_sync_window_days: int = Field(default=30, ge=1, le=3650)
    gmail_page_size: int = Field(default=500, ge=1, le=500, description="Ids per list request.")
    page_size_default: int = Field(default=50, ge=1, le=500)
    llm_provider: Literal["offline", "openai", "anthropic"] = Field(
        default="offline", description="The reasoning backend (offline = the rules engine)."
    )
    llm_base_url: str | None = Field(
        default=None, description="openai: any Chat Completions server (.../v1); anthropic: API."
    )
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries per task when the output is invalid."
    )
    llm_redact: bool = Field(
        default=False, description="Mask emails, phones and card numbers sent to a remote model."
    )
    offline_rules_dir: Path | None = Field(
        default=None, description="Replacement rule files for the offline engine, file by file."
    )
    knowledge_path: Path | None = Field(
        default=None, description="A TOML knowledge base (snippets for drafts); unset: samples."
    )
    triage_categories: str = Field(
        default=",".join(DEFAULT_CATEGORIES),
        description="Comma-separated categories for triage; must include 'other'.",
    )
    auto_done_confidence: float = Field(
        default=0.9, ge=0.5, le=1.0, description="Triage confidence needed to close by itself."
    )
    reasoning_enabled: bool = Field(
        default=True, description="Triage and draft new mail in serve and worker."
    )
    reasoning_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    reasoning_lease_seconds: int = Field(default=300, ge=5, le=3600)
    require_second_approver: bool = Field(
        default=False, description="Four-eyes: the approver must not be the draft's last editor."
    )
    send_delay_seconds: int = Field(
        default=0, ge=0, le=3600, description="Undo window: an approved reply waits this long."
    )
    state_after_send: Literal["WAITING_OTHERS", "NEEDS_ACTION", "DONE"] = Field(
        default="WAITING_OTHERS", description="Where a ticket goes once its reply is sent."
    )
    sender_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    sender_lease_seconds: int = Field(default=120, ge=5, le=3600)
    session_hours: float = Field(
        default=12, gt=0, le=24 * 30, description="A console sign-in lasts this long."
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Mark console cookies Secure. Unset: when the request came over HTTPS "
        "(behind a proxy, run serve with --proxy-headers so it knows).",
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=100, description="Failed sign-ins per email before a pause."
    )
    login_failure_window_seconds: int = Field(default=900, ge=10, le=86400)
    webhook_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    webhook_lease_seconds: int = Field(
        default=60, ge=5, le=3600, description="How long a delivering process holds a delivery."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Per delivery attempt, connecting included."
    )
    webhook_retry_base_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="First retry delay; doubles per attempt."
    )
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    webhook_max_attempts: int = Field(default=25, ge=1, le=100)
    webhook_max_age_seconds: int = Field(
        default=86400, ge=1, le=7 * 86400, description="Give a delivery up after this long."
    )

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(
                f"COMMAGENT_METRICS_TOKEN must have at least {MIN_METRICS_TOKEN_LENGTH} "
                "characters, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @field_validator("triage_categories")
    @classmethod
    def _needs_other(cls, value: str) -> str:
        if "other" not in _split(value):
            raise ValueError("COMMAGENT_TRIAGE_CATEGORIES must include 'other' (the fallback)")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Settings:
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError(
                "COMMAGENT_WEBHOOK_LEASE_SECONDS must be longer than "
                "COMMAGENT_WEBHOOK_TIMEOUT_SECONDS, or a slow receiver could get an event twice"
            )
        return self

    @property
    def categories(self) -> list[str]:
        return _split(self.triage_categories)

    @cached_property
    def database(self) -> URL:
        """The async SQLAlchemy URL, with plain `postgresql://` and `sqlite://` made async."""
        if self.database_url is None:
            return make_url(f"sqlite+aiosqlite:///{(self.data_dir / 'commagent.db').resolve()}")
        return normalise_database_url(self.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.database.get_backend_name() == "sqlite"

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def sync_lease(self) -> timedelta:
        return timedelta(seconds=self.sync_lease_seconds)

    @property
    def sync_stale_after(self) -> timedelta | None:
        """When a mailbox counts as stale (see COMMAGENT_SYNC_STALE_SECONDS)."""
        if self.sync_stale_seconds is not None:
            return timedelta(seconds=self.sync_stale_seconds)
        if self.sync_interval_seconds is not None:
            return timedelta(seconds=STALE_AFTER_INTERVALS * self.sync_interval_seconds)
        return None

    @property
    def database_display(self) -> str:
        """The database URL with any password masked, safe for logs and error messages."""
        return self.database.render_as_string(hide_password=True)

    def resolved_secret_key(self) -> tuple[SecretStr, bool]:
        """Return the secret key and whether it was just generated.

        PostgreSQL deployments must configure the key; the embedded default keeps a generated
        one in the data directory so that sessions and encrypted credentials survive restarts.
        """
        if self.secret_key is not None:
            if len(self.secret_key.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
                raise ConfigurationError(
                    f"COMMAGENT_SECRET_KEY is too short: use at least {MIN_SECRET_KEY_LENGTH} "
                    "characters, e.g. the output of "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
                )
            return self.secret_key, False
        if not self.is_sqlite:
            raise ConfigurationError(
                "COMMAGENT_SECRET_KEY is not set. It is required with PostgreSQL so that every "
                "process shares the same key; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
        return _load_or_generate_key(self.data_dir / SECRET_KEY_FILE)


def _split(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def normalise_database_url(raw: str) -> URL:
    """Accept the URL forms people paste (`postgres://`, `postgresql://`, `sqlite:///`)."""
    try:
        url = make_url(raw)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL in the message
        raise ConfigurationError(
            "COMMAGENT_DATABASE_URL is not a valid database URL; expected e.g. "
            "postgresql://user:password@host:5432/dbname or sqlite:///path/to/file.db"
        ) from exc
    backend = url.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        return url.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ConfigurationError(
        f"COMMAGENT_DATABASE_URL uses the unsupported backend {backend!r}; "
        "use postgresql:// or sqlite://."
    )


def _load_or_generate_key(path: Path) -> tuple[SecretStr, bool]:
    if path.exists():
        return SecretStr(path.read_text(encoding="utf-8").strip()), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return SecretStr(key), True


def load_secret_key(settings: Settings) -> SecretStr:
    """Resolve the secret key for a process that will use it, masking it in every log line and
    warning (by file name, never by value) when the embedded default has just generated one."""
    key, generated = settings.resolved_secret_key()
    scrubber.register(key.get_secret_value())
    if generated:
        get_logger(__name__).warning(
            "secret_key_generated",
            path=str(settings.data_dir / SECRET_KEY_FILE),
            hint="set COMMAGENT_SECRET_KEY to manage the key yourself",
        )
    return key
