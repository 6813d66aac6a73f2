"""ASGI middleware: request ids, request metrics and log lines, refusing NUL in query strings.

A request id is taken from `X-Request-ID` when the proxy sets a sane one, generated otherwise,
echoed in the response and bound to every log line of the request. Every request is timed into
the latency histogram and logged once (`http_request`), both by its route template
(`/api/v1/tickets/{ticket_id}`), never by the raw URL, whose ids and query strings would
multiply the series and could carry customer text into the log.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import structlog
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from communication_agent.core import metrics
from communication_agent.core.logging import get_logger

log = get_logger(__name__)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        # Make the id visible to handlers (the 500 handler reports it) under one header value.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"x-request-id"] + [
            (b"x-request-id", request_id.encode())
        ]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # Restored afterwards as it was: route dependencies bind more (the ticket id, say).
        outer = structlog.contextvars.get_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**outer)


UNMATCHED_ROUTE = "unmatched"
# Polled by load balancers and scrapers, or fetched with every page: logged at debug only.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/static/{path}"})


class RequestMetricsMiddleware:
    """Times every HTTP request into `commagent_http_request_duration_seconds` and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope, root_path)
            method = scope["method"]
            metrics.HTTP_REQUEST_SECONDS.labels(
                method, route, metrics.status_class(status)
            ).observe(elapsed)
            level = log.debug if route in QUIET_ROUTES else log.info
            level(
                "http_request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 1),
            )


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's full path template, or `unmatched`, once the app has handled the
    request (`root_path` is the scope's before routing).

    Routers included under a prefix report only their own part of the template, so the prefix
    is recovered from the request path: the path ends with the route's template filled in with
    the request's parameters, and what comes before it is the (literal) prefix. A mounted app
    (static files) shows as its mount path plus `/{path}`. Anything that does not fit is
    `unmatched`, which keeps the label set bounded whatever clients send.
    """
    route = scope.get("route")
    mounted: str = scope.get("root_path", "")
    if isinstance(route, Mount):
        return route.path + "/{path}"
    if route is None and mounted != root_path and mounted.startswith(root_path):
        return mounted[len(root_path) :] + "/{path}"  # the mount path, from the mount's scope
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    params = scope.get("path_params") or {}
    try:
        filled = template.format(**{k: str(v) for k, v in params.items()})
    except (KeyError, IndexError, ValueError):
        return UNMATCHED_ROUTE
    path: str = scope.get("path", "")
    if not path.endswith(filled):
        return UNMATCHED_ROUTE
    return path[: len(path) - len(filled)] + template


class RejectNulInQueryMiddleware:
    """PostgreSQL cannot store or compare text containing NUL; a query parameter carrying one
    (`%00`) is refused up front with a 422 that says so, instead of failing in the database."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"%00" in scope.get("query_string", b"").lower():
            body = json.dumps(
                {
                    "error": {
                        "code": "validation_error",
                        "message": "Invalid request: query parameters must not contain NUL "
                        "(%00) characters.",
                        "details": {},
                    }
                }
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 422, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
