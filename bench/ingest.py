"""Ingest benchmark: sync N messages from the loopback Gmail server into SQLite and PostgreSQL.

    .venv/bin/python -m bench.ingest                 # N = 1,000 and 5,000 on both databases
    .venv/bin/python -m bench.ingest --n 5000 --db sqlite
    .venv/bin/python -m bench.ingest --n 1000 --db postgresql --json /tmp/ingest.json

Each measurement runs in a fresh process against a Gmail server in another process. Prints
messages/second (sync wall time, start to last commit), and the resident set before the sync and
its peak during it (sampled every 20 ms).
Target: >= 500 messages/second on SQLite, peak memory flat in N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from bench.gmail_mailbox import SECRET, GmailProcess, connect_mailbox, gmail_settings
from bench.memory import RssSampler, rss_mib
from bench.scratch_database import scratch_database
from communication_agent.adapters.factory import provider_opener
from communication_agent.core.config import normalise_database_url
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.migrations import upgrade
from communication_agent.models import Message
from communication_agent.services import sync


async def measure(n: int, db: str, gmail: dict[str, str]) -> dict[str, object]:
    async with scratch_database(db) as url:
        engine = create_engine(normalise_database_url(url))
        try:
            await upgrade(engine)
            sessionmaker = create_sessionmaker(engine)
            mailbox_id = await connect_mailbox(sessionmaker, gmail)
            opener = provider_opener(gmail_settings(url, gmail), SECRET)
            before = rss_mib()
            async with RssSampler() as sampler:
                started = time.perf_counter()
                counts = await sync.sync_mailbox(sessionmaker, mailbox_id, opener, owner="bench")
                elapsed = time.perf_counter() - started
            async with sessionmaker() as session:
                stored = await session.scalar(select(func.count()).select_from(Message))
        finally:
            await engine.dispose()
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


def run_one(n: int, db: str) -> dict[str, object]:
    with GmailProcess(n) as gmail:
        return asyncio.run(measure(n, db, gmail.ready))


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
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes, databases = args.n or [1000, 5000], args.db or ["sqlite", "postgresql"]
    if args.single:
        print(json.dumps(run_one(sizes[0], databases[0])))
        return
    header = ("database", "messages", "stored", "seconds", "msg/s", "RSS peak", "before sync")
    print("{:<11} {:>8} {:>7} {:>8} {:>7} {:>9} {:>12}".format(*header))
    runs = []
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
            runs.append(r)
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
    if args.json:
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
