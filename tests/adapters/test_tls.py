"""Every outgoing client shares one TLS context: building one loads the CA bundle (about 50 ms
of CPU), and the sender opens a Gmail provider for every reply it sends."""

from __future__ import annotations

import ssl

import httpx
import pytest

from communication_agent.adapters.gmail import GmailProvider
from communication_agent.adapters.google_oauth import AccessTokens, GoogleOAuthClient
from communication_agent.adapters.remote_model import RemoteModel
from communication_agent.adapters.tls import client_tls
from communication_agent.adapters.webhook_http import HttpWebhookPoster


def _tls_of(client: httpx.AsyncClient) -> ssl.SSLContext:
    # httpx keeps the context on its connection pool; there is no public accessor.
    transport = client._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    context = transport._pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    return context


LOOPBACK = "https://127.0.0.1:9"  # never contacted: the clients are only built


async def test_the_context_verifies_certificates_and_hostnames() -> None:
    context = client_tls()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert client_tls() is context


@pytest.mark.parametrize("kind", ["gmail", "model", "webhook"])
async def test_each_client_uses_the_shared_context(kind: str) -> None:
    if kind == "gmail":
        client = GmailProvider(
            api_url=f"{LOOPBACK}/gmail/v1",
            tokens=AccessTokens(
                GoogleOAuthClient("id", "secret", f"{LOOPBACK}/auth", f"{LOOPBACK}/token"), "r"
            ),
            query="in:inbox",
            window_days=7,
        ).http
    elif kind == "model":
        client = RemoteModel(
            url=f"{LOOPBACK}/v1", model="m", headers={}, timeout=5, attempts=1, retry=None
        ).http
    else:
        client = HttpWebhookPoster(timeout=5, user_agent="test").http
    try:
        assert _tls_of(client) is client_tls()
    finally:
        await client.aclose()
