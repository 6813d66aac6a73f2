"""ASGI middleware: request ids, and refusing NUL characters in query strings.

A request id is taken from `X-Request-ID` when the proxy sets a sane one, generated otherwise,
echoed in the response and bound to every log line of the request.
"""

from __future__ import annotations

import json
import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


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
