"""Posting a webhook over HTTP (httpx): one attempt, bounded in time and in what it reads.

Redirects are never followed: a receiver that moved must be updated by an admin, and following
one could hand a signed event to another host. The response body is read only up to a few
hundred bytes, kept for the delivery's record; a receiver cannot make us buffer more.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from communication_agent import __version__
from communication_agent.adapters.http_retry import retry_after_seconds
from communication_agent.adapters.tls import client_tls
from communication_agent.core.config import Settings

RESPONSE_EXCERPT = 300


@dataclass(frozen=True)
class PostResult:
    """What one attempt came to: a status code (None when no response came) or an error."""

    status_code: int | None
    duration_ms: int
    error: str | None = None
    retry_after: float | None = None
    excerpt: str = ""


class WebhookPoster(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult: ...

    async def aclose(self) -> None: ...


class HttpWebhookPoster:
    def __init__(self, *, timeout: float, user_agent: str) -> None:
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": user_agent},
            verify=client_tls(),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        started = time.monotonic()

        def elapsed() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout):  # httpx's timeouts are per phase
                request = self.http.build_request("POST", url, content=body, headers=headers)
                response = await self.http.send(request, stream=True)
                try:
                    excerpt = await _excerpt(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return PostResult(None, elapsed(), f"no answer within {self.timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return PostResult(None, elapsed(), f"{type(exc).__name__}: {exc}"[:500])
        return PostResult(
            response.status_code,
            elapsed(),
            retry_after=retry_after_seconds(response.headers),
            excerpt=excerpt,
            error=_redirect_error(response),
        )


async def _excerpt(response: httpx.Response) -> str:
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= RESPONSE_EXCERPT:
            break
    return received[:RESPONSE_EXCERPT].decode("utf-8", "replace")


def _redirect_error(response: httpx.Response) -> str | None:
    if not response.is_redirect:
        return None
    target = httpx.URL(response.headers.get("location", ""))
    where = f" to {target.host}" if target.host else ""
    return f"redirected{where}; redirects are not followed: update the endpoint's URL"


def webhook_poster(settings: Settings) -> HttpWebhookPoster:
    return HttpWebhookPoster(
        timeout=settings.webhook_timeout_seconds, user_agent=f"commagent-webhooks/{__version__}"
    )
