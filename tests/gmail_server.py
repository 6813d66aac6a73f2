"""A Gmail v1 API and Google OAuth token endpoint on loopback, for tests and benchmarks.

It speaks the real wire format: the paths, parameters and JSON shapes of `users.getProfile`,
`users.messages.list/get/send` and `users.history.list` as the Gmail v1 discovery document
defines them, and its `batchPath` (`/batch/gmail/v1`: multipart/mixed, each part one inner call
answered as the single endpoint would answer it) (unknown or malformed parameters are refused with Google's 400 body, so an adapter
sending the wrong shape fails here as it would against Google), base64url `raw`, string
`historyId`s and `internalDate`s, page tokens, and Google's error bodies. Faults are injected
per route: 429 with Retry-After, 5xx, slow responses, 401 for a revoked access token, OAuth
`invalid_grant`, and 404 for an expired history id. `on_request` lets a test act at an exact
request (kill the client, revoke its grant); `state.faults_delivered` counts injected faults.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.loopback_server import LoopbackServer

# Query parameters each method accepts (from the discovery document), plus the standard ones.
STANDARD_PARAMS = {
    "alt",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "uploadType",
    "upload_protocol",
    "$.xgafv",
    "access_token",
    "callback",
}
ACCEPTED = {
    "profile": set(),
    "messages.list": {"includeSpamTrash", "labelIds", "maxResults", "pageToken", "q"},
    "messages.get": {"format", "metadataHeaders"},
    "history.list": {"historyTypes", "labelId", "maxResults", "pageToken", "startHistoryId"},
    "messages.send": set(),
}
FORMATS = {"full", "metadata", "minimal", "raw"}
HISTORY_TYPES = {"labelAdded", "labelRemoved", "messageAdded", "messageDeleted"}
MAX_RESULTS = 500
MAX_BATCH_CALLS = 100


def google_error(
    code: int, message: str, reason: str, status: str, domain: str = "global"
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": status,
        }
    }


ERRORS = {
    400: ("Invalid value", "invalidArgument", "INVALID_ARGUMENT", "global"),
    401: (
        "Request had invalid authentication credentials.",
        "authError",
        "UNAUTHENTICATED",
        "global",
    ),
    403: ("User-rate limit exceeded.", "userRateLimitExceeded", "PERMISSION_DENIED", "usageLimits"),
    404: ("Requested entity was not found.", "notFound", "NOT_FOUND", "global"),
    429: (
        "Too many concurrent requests for user.",
        "rateLimitExceeded",
        "RESOURCE_EXHAUSTED",
        "usageLimits",
    ),
    500: ("Backend Error", "backendError", "INTERNAL", "global"),
    503: ("The service is currently unavailable.", "backendError", "UNAVAILABLE", "global"),
}


def error_response(code: int, message: str | None = None) -> JSONResponse:
    default, reason, status, domain = ERRORS[code]
    return JSONResponse(
        google_error(code, message or default, reason, status, domain), status_code=code
    )


@dataclass
class Fault:
    """Answer requests to `route` (e.g. "messages.get") with `status`, `times` times."""

    route: str
    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0
    message_id: str | None = None  # only for this message (messages.get)


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    labels: list[str]
    internal_date_ms: int
    history_id: int


@dataclass
class GmailState:
    address: str = "support@company.example"
    client_id: str = "test-client-id.apps.googleusercontent.com"
    client_secret: str = "test-client-secret"
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history_id: int = 1000
    oldest_history_id: int = 0
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    # code -> (refresh token, PKCE challenge, redirect uri)
    auth_codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    consent_requests: list[dict[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    token_lifetime: int = 3600
    faults_delivered: int = 0  # requests a fault answered or slowed down
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[StoredMessage]:
        """The messages now (tests add mail from other threads while requests are served)."""
        with self.lock:
            return list(self.messages.values())


class GmailTestServer(LoopbackServer):
    """Start with `with GmailTestServer() as gmail:`; `gmail.api_url` and `gmail.token_url`."""

    def __init__(self) -> None:
        super().__init__()
        self.state = GmailState()
        self._ids = itertools.count(1)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base_url}/gmail/v1"
        self.token_url = f"{self.base_url}/token"
        self.auth_url = f"{self.base_url}/o/oauth2/auth"
        self._serve(_QuietDisconnects(_build_app(self)))
        self.deny_consent = False
        # Called in the server's thread with each request's route ("messages.get", "batch",
        # "token", ...; "messages.send.accepted" once a sent message is stored), before the
        # request is answered: a test can act at an exact point of a client's work.
        self.on_request: Callable[[str], None] | None = None

    # --- arranging the mailbox -------------------------------------------------------------

    def add_message(
        self,
        raw: bytes,
        *,
        thread_id: str | None = None,
        labels: tuple[str, ...] = ("INBOX",),
        internal_date_ms: int | None = None,
    ) -> StoredMessage:
        with self.state.lock:
            self.state.history_id += 7  # history ids increase with gaps, as Google's do
            n = next(self._ids)
            message = StoredMessage(
                id=f"{n:016x}",
                thread_id=thread_id or f"{n:016x}",
                raw=raw,
                labels=list(labels),
                internal_date_ms=internal_date_ms or int(time.time() * 1000) - 1000 * (10_000 - n),
                history_id=self.state.history_id,
            )
            self.state.messages[message.id] = message
            return message

    def issue_refresh_token(self) -> str:
        token = "1//" + secrets.token_urlsafe(24)
        self.state.refresh_tokens.add(token)
        return token

    def revoke_all_tokens(self) -> None:
        self.state.refresh_tokens.clear()
        self.state.access_tokens.clear()

    def expire_access_tokens(self) -> None:
        """Access tokens stop working before their stated expiry (as after a password change)."""
        self.state.access_tokens.clear()

    def expire_history(self) -> None:
        """Every history id issued so far stops being valid (history.list answers 404)."""
        self.state.oldest_history_id = self.state.history_id + 1

    def client_settings(self) -> dict[str, str]:
        """The settings (COMMAGENT_ names, lower case) that point the app at this server."""
        return {
            "gmail_api_url": self.api_url,
            "google_token_url": self.token_url,
            "google_client_id": self.state.client_id,
            "google_client_secret": self.state.client_secret,
        }

    def inject(self, fault: Fault) -> None:
        self.state.faults.append(fault)

    def calls(self, route: str) -> int:
        return sum(1 for name, _path, _query in self.state.requests if name == route)

    def observe(self, route: str, path: str, query: dict[str, list[str]]) -> None:
        self.state.requests.append((route, path, query))
        if self.on_request is not None:
            self.on_request(route)


class _QuietDisconnects:
    """A client that dies while sending its request (the crash tests kill them) is no error
    of this server's: nothing to log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return


def _build_app(server: GmailTestServer) -> Starlette:
    state = server.state

    async def apply_fault(route: str, message_id: str | None = None) -> Response | None:
        for fault in list(state.faults):
            if fault.route != route or (fault.message_id and fault.message_id != message_id):
                continue
            fault.times -= 1
            if fault.times <= 0:
                state.faults.remove(fault)
            state.faults_delivered += 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is None:
                return None
            response = error_response(fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            return response
        return None

    def check_params(route: str, request: Request) -> Response | None:
        query = {k: request.query_params.getlist(k) for k in request.query_params}
        server.observe(route, request.url.path, query)
        for name in query:
            if name not in ACCEPTED[route] and name not in STANDARD_PARAMS:
                return error_response(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message.",
                )
        if "maxResults" in query:
            value = query["maxResults"][-1]
            if not value.isdigit() or not 0 < int(value) <= MAX_RESULTS:
                return error_response(400, f"Invalid value for maxResults: {value}")
        if route == "messages.get" and query.get("format", ["full"])[-1] not in FORMATS:
            return error_response(400, "Invalid value at 'format'")
        if route == "history.list":
            if not query.get("startHistoryId") or not query["startHistoryId"][-1].isdigit():
                return error_response(400, "Invalid startHistoryId")
            if any(t not in HISTORY_TYPES for t in query.get("historyTypes", [])):
                return error_response(400, "Invalid value at 'history_types'")
        return None

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        expiry = state.access_tokens.get(token)
        return expiry is not None and expiry > time.time()

    async def guard(route: str, request: Request, message_id: str | None = None) -> Response | None:
        problem = check_params(route, request)
        if problem is not None:
            return problem
        fault = await apply_fault(route, message_id)
        if fault is not None:
            return fault
        if not authorised(request):
            return error_response(401)
        if request.path_params.get("user") not in ("me", state.address):
            return error_response(403, "Delegation denied")
        return None

    async def profile(request: Request) -> Response:
        if (problem := await guard("profile", request)) is not None:
            return problem
        return JSONResponse(
            {
                "emailAddress": state.address,
                "messagesTotal": len(state.messages),
                "threadsTotal": len({m.thread_id for m in state.snapshot()}),
                "historyId": str(state.history_id),
            }
        )

    def visible(message: StoredMessage, request: Request) -> bool:
        if request.query_params.get("includeSpamTrash", "false") != "true" and {
            "SPAM",
            "TRASH",
        } & set(message.labels):
            return False
        q = request.query_params.get("q", "")
        # "in:sent" alone narrows to sent mail; inside an OR (the default sync query) the
        # other branch admits the rest, which this simplified matcher does not model.
        only_sent = re.search(r"(^|\s)in:sent\b", q) and " OR " not in q
        if only_sent and "SENT" not in message.labels:
            return False
        wanted = re.search(r"rfc822msgid:(\S+)", q)
        if wanted and _message_id(message.raw) != wanted.group(1).strip("<>"):
            return False
        for category in re.findall(r"-category:(\w+)", q):
            if f"CATEGORY_{category.upper()}" in message.labels:
                return False
        labels = request.query_params.getlist("labelIds")
        return all(label in message.labels for label in labels)

    async def list_messages(request: Request) -> Response:
        if (problem := await guard("messages.list", request)) is not None:
            return problem
        size = int(request.query_params.get("maxResults", "100"))
        ordered = sorted(
            (m for m in state.snapshot() if visible(m, request)),
            key=lambda m: m.internal_date_ms,
            reverse=True,
        )
        start = _offset(request.query_params.get("pageToken"))
        if start is None:
            return error_response(400, "Invalid pageToken")
        page = ordered[start : start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(ordered)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(ordered):
            body["nextPageToken"] = _token(start + size)
        return JSONResponse(body)

    async def get_message(request: Request) -> Response:
        message_id = request.path_params["id"]
        if (problem := await guard("messages.get", request, message_id)) is not None:
            return problem
        message = state.messages.get(message_id)
        if message is None:
            return error_response(404)
        body: dict[str, Any] = {
            "id": message.id,
            "threadId": message.thread_id,
            "labelIds": message.labels,
            "snippet": "",
            "historyId": str(message.history_id),
            "internalDate": str(message.internal_date_ms),
            "sizeEstimate": len(message.raw),
        }
        if request.query_params.get("format", "full") == "raw":
            body["raw"] = base64.urlsafe_b64encode(message.raw).decode()
        return JSONResponse(body)

    async def list_history(request: Request) -> Response:
        if (problem := await guard("history.list", request)) is not None:
            return problem
        start_id = int(request.query_params["startHistoryId"])
        if start_id < state.oldest_history_id:
            return error_response(404)
        size = int(request.query_params.get("maxResults", "100"))
        added = sorted(
            (m for m in state.snapshot() if m.history_id > start_id),
            key=lambda m: m.history_id,
        )
        offset = _offset(request.query_params.get("pageToken"))
        if offset is None:
            return error_response(400, "Invalid pageToken")
        page = added[offset : offset + size]
        body: dict[str, Any] = {"historyId": str(state.history_id)}
        if page:
            body["history"] = [
                {
                    "id": str(m.history_id),
                    "messages": [{"id": m.id, "threadId": m.thread_id}],
                    "messagesAdded": [
                        {"message": {"id": m.id, "threadId": m.thread_id, "labelIds": m.labels}}
                    ],
                }
                for m in page
            ]
        if offset + size < len(added):
            body["nextPageToken"] = _token(offset + size)
        return JSONResponse(body)

    async def send_message(request: Request) -> Response:
        if (problem := await guard("messages.send", request)) is not None:
            return problem
        try:
            payload = await request.json()
            raw = base64.urlsafe_b64decode(payload["raw"] + "=" * (-len(payload["raw"]) % 4))
        except (ValueError, KeyError, TypeError):
            return error_response(
                400,
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
            )
        headers = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
        if "@" not in str(headers.get("To", "")):
            return error_response(400, "Invalid To header")
        sent = server.add_message(raw, thread_id=payload.get("threadId"), labels=("SENT",))
        if server.on_request is not None:
            server.on_request("messages.send.accepted")
        # "messages.send.accepted": a fault after Gmail stored the message, as when the
        # connection drops before the answer arrives (status), or the answer is slow (delay).
        if (lost := await apply_fault("messages.send.accepted")) is not None:
            return lost
        return JSONResponse({"id": sent.id, "threadId": sent.thread_id, "labelIds": sent.labels})

    async def token(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        client_id, client_secret = _client_credentials(request, form)
        server.observe(
            "token",
            "/token",
            {
                k: [str(v)]
                for k, v in form.items()
                if k not in {"refresh_token", "code", "client_secret"}
            },
        )
        fault = await apply_fault("token")
        if fault is not None:
            return fault
        if client_id != state.client_id or client_secret != state.client_secret:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                status_code=401,
            )
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("refresh_token") not in state.refresh_tokens:
                return JSONResponse(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    status_code=400,
                )
            refresh = None
        elif grant == "authorization_code":
            issued = state.auth_codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            if (
                issued is None
                or _s256(verifier) != issued[1]
                or form.get("redirect_uri") != issued[2]
            ):
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Bad Request"}, status_code=400
                )
            refresh = issued[0]
        else:
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Invalid grant_type: {grant}",
                },
                status_code=400,
            )
        access = "ya29." + secrets.token_urlsafe(24)
        state.access_tokens[access] = time.time() + state.token_lifetime
        body = {
            "access_token": access,
            "expires_in": state.token_lifetime,
            "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send",
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return JSONResponse(body)

    async def consent(request: Request) -> Response:
        """Google's consent screen, where the user always says yes (or no, if told to)."""
        params = dict(request.query_params)
        state.consent_requests.append(params)
        required = {
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        }
        if (
            not required <= params.keys()
            or params["client_id"] != state.client_id
            or params["code_challenge_method"] != "S256"
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        target = params["redirect_uri"]
        separator = "&" if "?" in target else "?"
        if server.deny_consent:
            return Response(
                status_code=302,
                headers={
                    "Location": f"{target}{separator}error=access_denied&state={params['state']}"
                },
            )
        code = "4/" + secrets.token_urlsafe(16)
        state.auth_codes[code] = (server.issue_refresh_token(), params["code_challenge"], target)
        return Response(
            status_code=302,
            headers={"Location": f"{target}{separator}code={code}&state={params['state']}"},
        )

    async def batch(request: Request) -> Response:
        """Split the batch, run each inner call through this same app, and join the answers."""
        server.observe("batch", request.url.path, {})
        if (fault := await apply_fault("batch")) is not None:
            return fault
        match = re.search(r'boundary="?([^";]+)"?', request.headers.get("content-type", ""))
        if not request.headers.get("content-type", "").startswith("multipart/mixed") or not match:
            return error_response(400, "Batch requests must be multipart/mixed")
        parts = _batch_parts(await request.body(), match.group(1).encode())
        if len(parts) > MAX_BATCH_CALLS:
            return error_response(400, f"Too many requests in batch (at most {MAX_BATCH_CALLS})")
        outer_auth = request.headers.get("authorization")
        boundary = f"batch_{secrets.token_hex(12)}"
        out = bytearray()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=server.base_url
        ) as inner_client:
            for content_id, inner in parts:
                answer = await _inner_call(inner_client, inner, outer_auth)
                out += f"--{boundary}\r\nContent-Type: application/http\r\n".encode()
                if content_id:
                    out += f"Content-ID: <response-{content_id.strip('<>')}>\r\n".encode()
                out += b"\r\n" + answer + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return Response(bytes(out), media_type=f"multipart/mixed; boundary={boundary}")

    routes = [
        Route("/batch/gmail/v1", batch, methods=["POST"]),
        Route("/o/oauth2/auth", consent),
        Route("/gmail/v1/users/{user}/profile", profile),
        Route("/gmail/v1/users/{user}/messages", list_messages),
        Route("/gmail/v1/users/{user}/messages/send", send_message, methods=["POST"]),
        Route("/gmail/v1/users/{user}/messages/{id}", get_message),
        Route("/gmail/v1/users/{user}/history", list_history),
        Route("/token", token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    return app


def _batch_parts(body: bytes, boundary: bytes) -> list[tuple[str | None, bytes]]:
    """(Content-ID, inner HTTP request) per part of a multipart/mixed batch body."""
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, inner = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in head.decode("latin-1").splitlines())
        )
        parts.append((headers.get("content-id"), inner))
    return parts


async def _inner_call(client: httpx.AsyncClient, inner: bytes, outer_auth: str | None) -> bytes:
    """Run one inner request; the answer as an HTTP/1.1 response in bytes."""
    head, _, body = inner.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target = rest.split(" ")[0]
    if not target.startswith("/"):
        status, content = (
            400,
            json.dumps(
                google_error(
                    400, "Batch calls take a path, not a URL", "invalidArgument", "INVALID_ARGUMENT"
                )
            ).encode(),
        )
        headers = {"content-type": "application/json; charset=UTF-8"}
    else:
        inner_headers = dict(
            (k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines if h)
        )
        if outer_auth and not any(k.lower() == "authorization" for k in inner_headers):
            inner_headers["Authorization"] = outer_auth
        response = await client.request(
            method, target, headers=inner_headers, content=body.strip() or None
        )
        status, content = response.status_code, response.content
        headers = {
            k: v for k, v in response.headers.items() if k in ("content-type", "retry-after")
        }
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k.title()}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


def _message_id(raw: bytes) -> str:
    headers = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    return str(headers.get("Message-ID", "")).strip().strip("<>")


def sent_messages(server: GmailTestServer) -> list[StoredMessage]:
    return [m for m in server.state.snapshot() if "SENT" in m.labels]


def _client_credentials(request: Request, form: Any) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.startswith("Basic "):
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return unquote(user), unquote(password)
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str | None) -> int | None:
    if token is None:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token))["o"])
    except (ValueError, KeyError, TypeError):
        return None


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
