"""One TLS client context for every outgoing HTTP client (Gmail, OAuth, model providers,
webhooks).

httpx builds a new `ssl.SSLContext` for each client it creates, and loading the CA bundle into
it costs about 50 ms of CPU. The sender opens a Gmail provider per reply, so that was half of
every send (bench/sending.py: about 10 sends a second). A context is safe to share between
clients and connections; the settings are httpx's defaults, read once per process (including
`SSL_CERT_FILE` and `SSL_CERT_DIR`, as httpx honours them).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()
