"""`commagent`: database, users, tokens and the server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.adapters.webhook_http import webhook_poster
from communication_agent.cli import evaluate as evaluate_cli
from communication_agent.cli import mailboxes as mailboxes_cli
from communication_agent.cli import webhooks as webhooks_cli
from communication_agent.cli.demo import demo
from communication_agent.cli.mail import import_mail, sync_mail
from communication_agent.cli.runtime import (
    configured,
    console,
    load_settings,
    run_on_engine,
    run_service,
)
from communication_agent.core import migrations
from communication_agent.core.config import load_secret_key
from communication_agent.core.db import create_sessionmaker
from communication_agent.models import ApiToken, User
from communication_agent.models.enums import Role, TicketState
from communication_agent.services import (
    health,
    reasoning_tasks,
    sending,
    users,
    webhook_delivery,
)
from communication_agent.services.actors import Actor
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.auth import IssuedToken
from communication_agent.services.background import run_sync_loop

app = typer.Typer(help="Communication Agent: support email, triaged, drafted, human-approved.")
db_app = typer.Typer(help="Database schema.")
users_app = typer.Typer(help="People who operate the system.")
tokens_app = typer.Typer(help="API tokens (sent as `Authorization: Bearer <token>`).")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(mailboxes_cli.app, name="mailboxes")
app.add_typer(evaluate_cli.app, name="eval")
app.add_typer(webhooks_cli.app, name="webhooks")
app.command("import")(import_mail)
app.command("sync")(sync_mail)
app.command("demo")(demo)

CLI_ACTOR = Actor.system("cli")
stdout = console()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    settings = load_settings()
    status = run_on_engine(settings, migrations.upgrade)
    stdout.print(f"{settings.database_display}: {status.describe()}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or `base` for none.")],
) -> None:
    """Step the schema back to REVISION (take a backup first)."""
    settings = load_settings()

    async def step_back(engine: AsyncEngine) -> migrations.SchemaStatus:
        return await migrations.downgrade(engine, revision)

    status = run_on_engine(settings, step_back)
    stdout.print(f"{settings.database_display}: {status.describe()}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision and whether it is current (exit 1 if not)."""
    settings = load_settings()
    status = run_on_engine(settings, migrations.schema_status)
    stdout.print(f"{settings.database_display}: {status.describe()}")
    if not status.is_current:
        raise typer.Exit(code=1)


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def users_create(
    email: str,
    role: Annotated[Role, typer.Option(help="viewer, operator or admin.")] = Role.OPERATOR,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a user. The password is read from stdin when piped, else prompted for."""
    settings = load_settings()
    password = _read_password()

    async def create(session: AsyncSession) -> User:
        return await users.create_user(
            session, CLI_ACTOR, email=email, password=password, role=role, display_name=name
        )

    user = run_service(settings, create)
    stdout.print(f"created {user.role} {user.email} (id {user.id})")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    rows = run_service(load_settings(), users.list_users)
    table = Table("id", "email", "name", "role", "active", "last login")
    for user in rows:
        last_login = user.last_login_at.isoformat() if user.last_login_at else "never"
        active = "yes" if user.is_active else "no"
        table.add_row(str(user.id), user.email, user.display_name, user.role, active, last_login)
    stdout.print(table)


@tokens_app.command("create")
def tokens_create(
    email: str, name: Annotated[str, typer.Option(help="What the token is for.")] = ""
) -> None:
    """Issue an API token for a user and print it. It is shown this once only."""

    async def issue(session: AsyncSession) -> IssuedToken:
        return await users.issue_token(session, CLI_ACTOR, email=email, name=name)

    issued = run_service(load_settings(), issue)
    console(stderr=True).print(
        f"token {issued.token.id} for {email}: store it now, it cannot be shown again."
    )
    print(issued.plaintext)


@tokens_app.command("list")
def tokens_list(email: Annotated[str | None, typer.Argument()] = None) -> None:
    """List API tokens (never their values), optionally of one user."""

    async def list_them(session: AsyncSession) -> list[ApiToken]:
        return list(await users.list_tokens(session, email))

    table = Table("id", "user id", "name", "prefix", "created", "last used", "revoked")
    for t in run_service(load_settings(), list_them):
        table.add_row(
            str(t.id),
            str(t.user_id),
            t.name,
            t.prefix + "…",
            t.created_at.isoformat(),
            t.last_used_at.isoformat() if t.last_used_at else "never",
            t.revoked_at.isoformat() if t.revoked_at else "",
        )
    stdout.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: int) -> None:
    """Revoke an API token; requests using it are refused from now on."""

    async def revoke(session: AsyncSession) -> ApiToken:
        return await users.revoke_token(session, CLI_ACTOR, token_id)

    token = run_service(load_settings(), revoke)
    stdout.print(f"token {token.id} revoked")


@app.command()
def worker(
    interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between rounds (default: COMMAGENT_SYNC_INTERVAL_SECONDS, else 60).",
            min=0.1,
        ),
    ] = None,
) -> None:
    """Run background work (sync, triage and drafting, sending, webhooks) until Ctrl-C or SIGTERM.

    Run as many as you like on PostgreSQL: each mailbox is synced by one worker at a time, and
    each queued ticket is triaged by one."""
    settings = load_settings()
    secret_key = load_secret_key(settings).get_secret_value()
    every = interval or settings.sync_interval_seconds or 60
    owner = f"worker:{socket.gethostname()}:{os.getpid()}"
    model = configured(lambda: reasoning_model(settings)) if settings.reasoning_enabled else None

    async def work(engine: AsyncEngine) -> None:
        await migrations.ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        database = settings.database_display
        stdout.print(f"worker {owner}: syncing mailboxes every {every:g}s (database: {database})")
        sessionmaker = create_sessionmaker(engine)
        loops = [
            run_sync_loop(
                sessionmaker,
                provider_opener(settings, secret_key),
                owner=owner,
                interval=every,
                stop=stop,
                lease=settings.sync_lease,
            )
        ]
        if model is not None:
            stdout.print(f"worker {owner}: triage and drafting with {model.provider}/{model.model}")
            loops.append(
                reasoning_tasks.run_loop(
                    sessionmaker,
                    model,
                    AssistantConfig.from_settings(settings, (secret_key,)),
                    owner=owner,
                    interval=settings.reasoning_interval_seconds,
                    lease=timedelta(seconds=settings.reasoning_lease_seconds),
                    stop=stop,
                )
            )
        loops.append(
            sending.run_loop(
                sessionmaker,
                provider_opener(settings, secret_key),
                owner=owner,
                interval=settings.sender_interval_seconds,
                lease=timedelta(seconds=settings.sender_lease_seconds),
                state_after_send=TicketState(settings.state_after_send),
                stop=stop,
            )
        )
        loops.append(
            webhook_delivery.run_loop(
                sessionmaker,
                webhook_poster(settings),
                secret_key,
                webhook_delivery.DeliveryPolicy.from_settings(settings),
                owner=owner,
                interval=settings.webhook_interval_seconds,
                stop=stop,
            )
        )
        try:
            with health.serve_metrics(settings, sessionmaker):
                await asyncio.gather(*loops)
        finally:
            if model is not None:
                await model.aclose()

    run_on_engine(settings, work)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
) -> None:
    """Run the web application and API."""
    settings = load_settings()

    async def check(engine: AsyncEngine) -> migrations.SchemaStatus:
        load_secret_key(settings)  # fail (or generate the key) here, not in each worker
        await reasoning_model(settings).aclose()  # a half-configured model backend stops here
        AssistantConfig.from_settings(settings)
        return await migrations.ensure_schema(engine, auto_migrate=settings.should_auto_migrate)

    run_on_engine(settings, check)
    stdout.print(f"serving on http://{host}:{port}  (database: {settings.database_display})")
    uvicorn.run(
        "communication_agent.api.app:create_app_for_server",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        proxy_headers=True,
    )
