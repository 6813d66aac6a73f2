"""`commagent mailboxes`: list mailboxes with their health, and connect Gmail from a terminal."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.adapters.factory import gmail_authorizer
from communication_agent.cli.runtime import console, fail, load_settings, run_service
from communication_agent.core.config import load_secret_key
from communication_agent.models import Mailbox
from communication_agent.services import gmail_connect, mailboxes
from communication_agent.services.actors import Actor
from communication_agent.services.mailboxes import MailboxHealth

app = typer.Typer(help="Mailboxes: list them, connect Gmail.")
stdout = console()
stderr = console(stderr=True)
CLI_ACTOR = Actor.system("cli")
DONE_PAGE = b"<html><body><p>Gmail is connected. You can close this window.</p></body></html>"


@app.command("list")
def list_mailboxes() -> None:
    """Mailboxes with their sync health."""
    rows: list[MailboxHealth] = run_service(load_settings(), mailboxes.list_mailboxes)
    table = Table(
        "id", "name", "provider", "token", "last success", "errors", "quarantined", "last error"
    )
    for h in rows:
        m = h.mailbox
        last = m.last_sync_succeeded_at.isoformat() if m.last_sync_succeeded_at else "never"
        table.add_row(
            str(m.id),
            m.name,
            m.provider,
            m.token_state,
            last,
            str(m.consecutive_errors),
            str(h.quarantined),
            m.last_error or "",
        )
    stdout.print(table)


async def _wait_for_redirect(port: int, ready: asyncio.Future[int]) -> dict[str, str]:
    """Serve one request on 127.0.0.1 (Google's loopback redirect) and return its query."""
    received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode("latin-1")
        parts = request_line.split(" ")
        query = parse_qs(urlsplit(parts[1]).query) if len(parts) > 1 else {}
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n" + DONE_PAGE
        )
        await writer.drain()
        writer.close()
        if ("code" in query or "error" in query) and not received.done():
            received.set_result({k: v[-1] for k, v in query.items()})

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        return await received


@app.command("connect-gmail")
def connect_gmail(
    port: Annotated[
        int,
        typer.Option(help="Local port for Google's redirect (0: any free one).", min=0, max=65535),
    ] = 0,
    timeout: Annotated[int, typer.Option(help="Seconds to wait for the consent.", min=10)] = 600,
) -> None:
    """Connect a Gmail mailbox from a terminal (the loopback redirect flow).

    Open the printed URL in a browser on this machine, or forward the port over SSH
    (`ssh -L PORT:127.0.0.1:PORT server`) when this is a headless server.
    """
    settings = load_settings()
    secret_key = load_secret_key(settings).get_secret_value()
    authorizer = gmail_authorizer(settings)
    verifier = authorizer.new_code_verifier()
    state = secrets.token_urlsafe(24)

    async def consent() -> tuple[dict[str, str], str]:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiting = asyncio.create_task(_wait_for_redirect(port, ready))
        bound = await ready
        redirect_uri = f"http://127.0.0.1:{bound}/"
        url = authorizer.authorization_url(
            redirect_uri=redirect_uri, state=state, code_verifier=verifier
        )
        stderr.print("Open this URL in a browser and allow access:")
        print(url, flush=True)
        async with asyncio.timeout(timeout):
            return await waiting, redirect_uri

    try:
        query, redirect_uri = asyncio.run(consent())
    except TimeoutError:
        fail(f"no answer from Google within {timeout} seconds; nothing was changed")
    if query.get("state") != state:
        fail("the redirect's state does not match this attempt; nothing was changed")
    if "error" in query:
        fail(f"Google did not grant access ({query['error']}); nothing was changed")

    async def store(session: AsyncSession) -> Mailbox:
        return await gmail_connect.connect_with_code(
            session,
            CLI_ACTOR,
            authorizer,
            secret_key,
            code=query["code"],
            redirect_uri=redirect_uri,
            code_verifier=verifier,
        )

    mailbox = run_service(settings, store)
    stdout.print(
        f"connected {mailbox.address} (mailbox {mailbox.id}); run `commagent sync {mailbox.name}`"
    )
