"""A webhook receiver on loopback, for tests of webhook delivery.

It does what a careful receiver does: it checks the signature with the endpoint's secret (when
given one) and the timestamp against a replay window, exactly as the README tells receivers to,
and answers 401 when either fails. Every request is recorded, refused or not. Faults (an error
status N times, 429 with Retry-After, a redirect, an answer slower than the sender's timeout)
apply in the order injected, to the next requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.loopback_server import LoopbackServer

REPLAY_WINDOW_SECONDS = 300


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """The README's receiver check: a fresh timestamp and a matching HMAC, compared in constant
    time. `headers` with lower-case names."""
    timestamp = headers.get("x-commagent-timestamp", "")
    signature = headers.get("x-commagent-signature", "")
    if not timestamp.isdigit():
        return False
    if abs((now or time.time()) - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(signature, "sha256=" + expected.hexdigest())


@dataclass
class Fault:
    """The next `times` requests wait `delay` seconds, then answer `status` (None: as usual),
    with `Retry-After` or `Location` when given."""

    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    location: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: int  # the status it was given

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class WebhookReceiver(LoopbackServer):
    """`with WebhookReceiver() as hooks:`; register `hooks.url()` as an endpoint."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret  # set it once the endpoint's secret is known
        self.received: list[Received] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["POST"])])
        self._serve(app, timeout_graceful_shutdown=1)  # requests still sleeping in a `delay`

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            fault = self._next_fault()
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            response: Response = JSONResponse({"error": "injected"}, status_code=fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            if fault.location is not None:
                response.headers["Location"] = fault.location
        elif self.secret is not None and not verify(self.secret, headers, body):
            response = JSONResponse({"error": "bad signature"}, status_code=401)
        else:
            response = Response(status_code=204)
        with self._lock:
            self.received.append(
                Received(request.url.path, headers, body, time.monotonic(), response.status_code)
            )
        return response

    def _next_fault(self) -> Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.pop(0)
        return fault
