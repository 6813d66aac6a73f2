"""Ingest benchmark: sync N messages from the loopback Gmail server into SQLite and PostgreSQL.

    .venv/bin/python -m bench.ingest                 # N = 1,000 and 5,000 on both databases
    .venv/bin/python -m bench.ingest --n 5000 --db sqlite

Each measurement runs in a fresh process against a Gmail server in another process. Prints
messages/second (sync wall time, start to last commit), and the resident set before the sync and
its peak during it (sampled every 20 ms).
Target: >= 500 messages/second on SQLite, peak memory flat in N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from pydantic import SecretStr
from sqlalchemy import func, select

from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import Settings, normalise_database_url
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.migrations import upgrade
from communication_agent.models import Message
from communication_agent.services import mailboxes, sync
from communication_agent.services.actors import Actor

POSTGRES_SERVER = os.environ.get(
    "COMMAGENT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 (a throwaway benchmark key)


async def _postgres_database() -> tuple[str, str]:
    name = f"commagent_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(POSTGRES_SERVER)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return POSTGRES_SERVER.rsplit("/", 1)[0] + f"/{name}", name


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_SERVER)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def measure(n: int, db: str, gmail: dict[str, str]) -> dict[str, object]:
    scratch = None
    if db == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    else:
        url, scratch = await _postgres_database()
    settings = Settings(
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        gmail_api_url=gmail["api_url"],
        google_token_url=gmail["token_url"],
        google_client_id=gmail["client_id"],
        google_client_secret=SecretStr(gmail["client_secret"]),
        gmail_sync_window_days=3650,
    )
    engine = create_engine(normalise_database_url(url))
    try:
        await upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            mailbox = await mailboxes.connect_gmail(
                session,
                Actor.system("bench"),
                address=gmail["address"],
                refresh_token=gmail["refresh_token"],
                secret_key=SECRET,
            )
        opener = provider_opener(settings, SECRET)
        before = _rss_mib()
        sampler = _RssSampler()
        sampling = asyncio.create_task(sampler.run())
        started = time.perf_counter()
        counts = await sync.sync_mailbox(sessionmaker, mailbox.id, opener, owner="bench")
        elapsed = time.perf_counter() - started
        sampler.stop = True
        await sampling
        async with sessionmaker() as session:
            stored = await session.scalar(select(func.count()).select_from(Message))
    finally:
        await engine.dispose()
        if scratch:
            await _drop(scratch)
    return {
        "db": db,
        "n": n,
        "stored": stored,
        "seconds": round(elapsed, 2),
        "messages_per_second": round(n / elapsed),
        "peak_rss_mib": round(sampler.peak),
        "before_sync_mib": round(before),
        "new_tickets": counts.new_tickets,
        "threaded": counts.threaded,
    }


def _rss_mib() -> float:
    """The resident set right now (ru_maxrss would report start-up's peak, not the sync's)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class _RssSampler:
    def __init__(self) -> None:
        self.peak = _rss_mib()
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, _rss_mib())
            await asyncio.sleep(0.02)


def _gmail_server(n: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.gmail_process", "--messages", str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def run_one(n: int, db: str) -> dict[str, object]:
    server, gmail = _gmail_server(n)
    try:
        return asyncio.run(measure(n, db, gmail))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, action="append", help="messages (repeatable); default 1000 and 5000"
    )
    parser.add_argument(
        "--db", choices=["sqlite", "postgresql"], action="append", help="default both"
    )
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes, databases = args.n or [1000, 5000], args.db or ["sqlite", "postgresql"]
    if args.single:
        print(json.dumps(run_one(sizes[0], databases[0])))
        return
    header = ("database", "messages", "stored", "seconds", "msg/s", "RSS peak", "before sync")
    print("{:<11} {:>8} {:>7} {:>8} {:>7} {:>9} {:>12}".format(*header))
    for db in databases:
        for n in sizes:
            out = subprocess.run(  # noqa: S603
                [sys.executable, "-m", "bench.ingest", "--single", "--n", str(n), "--db", db],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).parent.parent,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if r["stored"] != n:  # a fast run that lost messages is a failure, not a figure
                raise SystemExit(f"{db}, {n} messages: only {r['stored']} stored")
            row = (
                r["db"],
                r["n"],
                r["stored"],
                r["seconds"],
                r["messages_per_second"],
                f"{r['peak_rss_mib']} MiB",
                f"{r['before_sync_mib']} MiB",
            )
            print("{:<11} {:>8} {:>7} {:>8} {:>7} {:>9} {:>12}".format(*row))


if __name__ == "__main__":
    main()
