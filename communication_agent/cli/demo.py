"""`commagent demo`: what `make run` starts with: a login per role, an API token, and a mailbox of
sample support mail already triaged and drafted. Idempotent: it runs at every start."""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.cli.runtime import configured, console, fail, load_settings, run_on_engine
from communication_agent.core.config import load_secret_key
from communication_agent.core.db import create_sessionmaker
from communication_agent.core.logging import configure_logging
from communication_agent.core.migrations import ensure_schema
from communication_agent.services import demo as demo_service
from communication_agent.services import users
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.demo import DEMO_ACTOR, DemoSummary
from communication_agent.services.sync import SyncInProgressError, sync_mailbox

DEMO_TOKEN_FILE = "demo_token"  # noqa: S105 (a file name)
DEMO_MAIL_DIR = "demo-mail"
OWNER = f"demo:{socket.gethostname()}:{os.getpid()}"
stdout = console()


def demo(
    email: Annotated[str, typer.Option(help="The demo admin's email.")] = "admin@example.com",
    password: Annotated[str, typer.Option(help="The demo users' password.")] = "commagent-demo",  # noqa: S107
    url: Annotated[
        str, typer.Option(help="Where the server will listen.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Prepare the demo (idempotent): an admin, an operator and a viewer login, an API token, and
    the mailbox `demo` of sample support mail, synced, triaged and drafted by the configured
    reasoning backend (the offline rules by default).

    For trying the system on the embedded default; on a real deployment create users with
    `commagent users create` and connect real mailboxes instead."""
    settings = load_settings()
    if settings.log_level.upper() == "INFO":  # the summary says what happened; a line per
        configure_logging("WARNING", settings.log_format)  # ticket would bury the logins
    folder = (settings.data_dir / DEMO_MAIL_DIR).resolve()
    secret_key = configured(lambda: load_secret_key(settings)).get_secret_value()
    model = configured(lambda: reasoning_model(settings)) if settings.reasoning_enabled else None
    config = configured(lambda: AssistantConfig.from_settings(settings, (secret_key,)))
    try:
        demo_service.install_mail(folder)
    except OSError as exc:
        fail(f"cannot copy the demo mail to {folder}: {exc}")
    logins = demo_service.demo_logins(email)
    token_file = settings.data_dir / DEMO_TOKEN_FILE
    saved = _saved_token(token_file)

    async def prepare(engine: AsyncEngine) -> tuple[str, DemoSummary]:
        await ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            await demo_service.ensure_logins(session, DEMO_ACTOR, logins, password=password)
            token = saved
            if token is None:
                issued = await users.issue_token(session, DEMO_ACTOR, email=email, name="demo")
                token = issued.plaintext
            mailbox = await demo_service.ensure_mailbox(session, DEMO_ACTOR, folder)
        with suppress(SyncInProgressError):  # a running server is syncing it: it stores the mail
            await sync_mailbox(
                sessionmaker,
                mailbox.id,
                provider_opener(settings, secret_key),
                owner=OWNER,
                lease=settings.sync_lease,
            )
        if model is not None:
            await demo_service.reason_until_idle(
                sessionmaker,
                model,
                config,
                owner=OWNER,
                lease=timedelta(seconds=settings.reasoning_lease_seconds),
            )
        async with sessionmaker() as session:
            return token, await demo_service.summarise(session, mailbox.id)

    async def prepare_and_close(engine: AsyncEngine) -> tuple[str, DemoSummary]:
        try:
            return await prepare(engine)
        finally:
            if model is not None:
                await model.aclose()

    token, summary = run_on_engine(settings, prepare_and_close)
    if token != saved:
        _save_token(token_file, token)
    for n, login in enumerate(logins):
        label = "login:" if n == 0 else ""
        stdout.print(f"{label:<10} {login.email} / {password}  ({login.role})", highlight=False)
    stdout.print(f"API token: {token}")
    stdout.print(f'try:       curl -H "Authorization: Bearer {token}" {url}/api/v1/me')
    _describe(summary, folder, model)


def _saved_token(token_file: Path) -> str | None:
    """The admin's demo API token, issued by an earlier run and kept in the data directory."""
    return token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None


def _save_token(token_file: Path, token: str) -> None:
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n", encoding="utf-8")


def _describe(summary: DemoSummary, folder: Path, model: ReasoningModel | None) -> None:
    languages = ", ".join(summary.languages) or "none detected yet"
    stdout.print(
        f"demo mail: {summary.messages} messages in {summary.tickets} tickets "
        f"({summary.threads} with several messages; languages {languages}) "
        f'in the mailbox "{demo_service.MAILBOX_NAME}"',
        highlight=False,
    )
    backend = f"{model.provider}/{model.model}" if model else "off (COMMAGENT_REASONING_ENABLED)"
    stdout.print(
        f"triage:    {summary.triaged} tickets triaged, {summary.proposed_drafts} draft replies "
        f"waiting for review ({backend})",
        highlight=False,
    )
    stdout.print(f"sends:     approved replies are written to {folder / 'sent'}", highlight=False)
