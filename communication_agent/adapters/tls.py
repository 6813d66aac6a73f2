"""One TLS client context for every outgoing HTTP client (Gmail, OAuth, model providers,
webhooks).

httpx builds a new `ssl.SSLContext` for each client it creates, and loading the CA bundle into
it costs about 50 ms of CPU. The sender opens a Gmail provider per reply, so that was half of
every send (bench/sending.py: about 10 sends a second). The context carries httpx's defaults
(certificates and host names verified), with `SSL_CERT_FILE` / `SSL_CERT_DIR` read once, when the
first client is built.

Shared means nobody may change it: no `load_cert_chain`, no cipher or ALPN settings of one
client's own. httpcore sets ALPN on it for every connection, to HTTP/1.1 for all our clients,
so they agree; a client that needs HTTP/2 or a client certificate must build its own context.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()
