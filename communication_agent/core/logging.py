"""Structured logging with structlog, plus a last line of defence against leaked secrets.

Code should never log a secret in the first place; `SecretScrubber` additionally replaces every
registered secret value (the secret key, the database password) wherever it appears in a log
event, including inside exception text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_MIN_SECRET_LENGTH = 6


class SecretScrubber:
    """A structlog processor that masks known secret values in every rendered field."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def register(self, value: str | None) -> None:
        if value and len(value) >= _MIN_SECRET_LENGTH:
            self._secrets.add(value)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[key] = self.scrub(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event_dict[key] = self.scrub(str(value))
        return event_dict


scrubber = SecretScrubber()


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and the standard library's logging through one renderer.

    `auto` renders for humans on a terminal and JSON lines otherwise (files, journald, CI).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrubber,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "uvicorn.access",
        "sqlalchemy.engine",
        "aiosqlite",
        "asyncio",
        "alembic",
        "httpx",
        "httpcore",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
