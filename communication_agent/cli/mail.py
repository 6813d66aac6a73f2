"""`commagent import` and `commagent sync`: bring mail in, with progress and a summary."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.adapters.factory import provider_opener
from communication_agent.cli.runtime import console, load_settings, run_on_engine
from communication_agent.core.config import Settings, load_secret_key
from communication_agent.core.db import create_sessionmaker
from communication_agent.core.migrations import ensure_schema
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor
from communication_agent.services.ingestion import SyncCounts

CLI_ACTOR = Actor.system("cli")
OWNER = f"cli:{socket.gethostname()}:{os.getpid()}"
stdout = console()
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the counts as JSON on the last line.")
]


def _describe(counts: SyncCounts) -> str:
    return (
        f"fetched {counts.fetched}  new {counts.new_messages}  tickets {counts.new_tickets}  "
        f"duplicates {counts.duplicates}  quarantined {counts.quarantined}  errors {counts.errors}"
    )


async def _sync_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    ids: list[int],
    show: Callable[[SyncCounts], None],
) -> SyncCounts:
    total = SyncCounts()
    opener = provider_opener(settings, load_secret_key(settings).get_secret_value())
    for mailbox_id in ids:
        base = SyncCounts(**{k: getattr(total, k) for k in total.as_dict()})

        def progress(counts: SyncCounts, base: SyncCounts = base) -> None:
            show(SyncCounts(**{k: getattr(base, k) + getattr(counts, k) for k in counts.as_dict()}))

        counts = await sync.sync_mailbox(
            sessionmaker,
            mailbox_id,
            opener,
            owner=OWNER,
            progress=progress,
            lease=settings.sync_lease,
        )
        for key in total.as_dict():
            setattr(total, key, getattr(total, key) + getattr(counts, key))
    return total


def _execute(
    settings: Settings,
    as_json: bool,
    choose_mailboxes: Callable[[AsyncSession], Awaitable[list[int]]],
) -> SyncCounts:
    """Migrate if allowed, choose the mailboxes, sync them with a live progress line."""

    async def main(engine: AsyncEngine) -> SyncCounts:
        await ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            ids = await choose_mailboxes(session)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=as_json,
        ) as bar:
            task = bar.add_task("starting", total=None)
            return await _sync_all(
                sessionmaker, settings, ids, lambda c: bar.update(task, description=_describe(c))
            )

    return run_on_engine(settings, main)


def _report(counts: SyncCounts, as_json: bool) -> None:
    if as_json:
        print(json.dumps(counts.as_dict()))
        return
    table = Table(
        "fetched", "new messages", "new tickets", "threaded", "duplicates", "quarantined", "errors"
    )
    table.add_row(*(str(v) for v in list(counts.as_dict().values())[:7]))
    stdout.print(table)


def import_mail(
    path: Annotated[
        Path, typer.Argument(help="A folder of .eml files, a Maildir, or an mbox file.")
    ],
    mailbox: Annotated[str, typer.Option(help="The mailbox to import into (created if new).")],
    address: Annotated[
        str | None, typer.Option(help="The mailbox's own address (needed when new).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import mail from disk into a mailbox; importing again adds only what is new."""
    settings = load_settings()
    folder = path.expanduser().resolve()

    async def choose(session: AsyncSession) -> list[int]:
        box = await mailboxes.ensure_local_mailbox(
            session, CLI_ACTOR, name=mailbox, path=folder, address=address
        )
        return [box.id]

    _report(_execute(settings, as_json, choose), as_json)


def sync_mail(
    mailbox: Annotated[
        str | None, typer.Argument(help="A mailbox name; all active ones if omitted.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sync one mailbox, or every active one, now."""
    settings = load_settings()

    async def choose(session: AsyncSession) -> list[int]:
        if mailbox is not None:
            return [(await mailboxes.find_mailbox(session, mailbox)).id]
        return list(await mailboxes.active_mailbox_ids(session))

    _report(_execute(settings, as_json, choose), as_json)
