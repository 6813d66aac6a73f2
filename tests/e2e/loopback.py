"""Small HTTP servers on loopback that only count what reaches them.

A hostile email points at them: the canary must never hear from the browser (nothing in the
mail may run), and the image server only once the operator asks for remote images.
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

# The smallest transparent PNG: what a tracking pixel is.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


class CountingServer:
    """Answers every GET (an image, or 204) and records its path; `url` is its base URL."""

    def __init__(self, *, serves_images: bool) -> None:
        self._lock = threading.Lock()
        self._paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the method name http.server dispatches to
                recorder._record(self.path)
                if serves_images:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PIXEL)))
                    self.end_headers()
                    self.wfile.write(PIXEL)
                else:
                    self.send_response(204)
                    self.end_headers()

            do_POST = do_GET  # noqa: N815 (a fetch() may POST; it counts the same)

            def log_message(self, format: str, *args: object) -> None:
                return None  # quiet: the recorded paths are the log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def _record(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def hits(self, prefix: str = "/") -> int:
        return sum(1 for p in self.paths if p.startswith(prefix))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
