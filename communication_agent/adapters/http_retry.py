"""Retrying HTTP calls to providers: exponential backoff with full jitter, honouring Retry-After.

Shared by every adapter that talks to a rate-limited API. The policy is data so tests (and
benchmarks) can shorten the waits without changing the behaviour under test.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniformly in [0, min(cap, base * 2**attempt)] (spreads retry storms)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311

    def delay_for(self, headers: Mapping[str, str] | None, attempt: int) -> float:
        """The server's `Retry-After` (capped) when it gave one, else backoff. `headers` are a
        response's (httpx's, or an inner batch response's with lower-cased names)."""
        hinted = retry_after_seconds(headers) if headers is not None else None
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        return self.backoff(attempt)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` as seconds, whether given as a number or an HTTP date."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


Sleep = Callable[[float], Awaitable[None]]
default_sleep: Sleep = asyncio.sleep
