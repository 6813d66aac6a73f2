"""An ASGI app served by uvicorn in a background thread on a free loopback port: the shared
part of every test server that speaks a real wire format (Gmail, model providers, webhook
receivers). Use it in a `with` block; the block starts the server and stops it afterwards."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp

from tests.live_server import free_port

START_TIMEOUT_SECONDS = 10


class LoopbackServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _serve(self, app: ASGIApp, **options: Any) -> None:
        """Serve `app` on `self.port` once the `with` block starts (`options` go to uvicorn)."""
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **options
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Self:
        assert self._server is not None
        assert self._thread is not None, "call _serve(app) in __init__"
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
