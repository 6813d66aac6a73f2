"""The crash campaign: many seeded trials of `tests.crash_harness`, SIGKILL at random points of
sync and send, then every invariant checked. Exits 1 when a trial broke one (and stops there
unless `--keep-going`).

    .venv/bin/python -m bench.crash_campaign --trials 50
    .venv/bin/python -m bench.crash_campaign --trials 50 --database postgresql://postgres@127.0.0.1:5432/test

SQLite runs on a fresh file per trial; with `--database` each trial gets a truncated scratch
database created on that server (and dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import URL

from communication_agent.core.config import normalise_database_url
from tests.conftest import TEST_SECRET_KEY
from tests.crash_harness import TrialResult, run_trial
from tests.crash_world import TrialSize
from tests.databases import PostgresScratch, SqliteTemplate

CAMPAIGN_SIZE = TrialSize(conversations=14, arrivals=4, kills=3)


async def campaign(
    trials: int,
    first_seed: int,
    databases: PostgresScratch | SqliteTemplate,
    size: TrialSize,
    workdir: Path,
    *,
    keep_going: bool,
) -> list[TrialResult]:
    results = []
    for n in range(trials):
        url: URL
        if isinstance(databases, PostgresScratch):
            await databases.reset()
            url = databases.url
        else:
            url = databases.copy_to(workdir / f"trial-{n}")
        result = await run_trial(
            first_seed + n, url, workdir / f"trial-{n}", secret_key=TEST_SECRET_KEY, size=size
        )
        results.append(result)
        print(_line(n, result), flush=True)
        if result.violations and not keep_going:
            print("stopping at the first trial with violations (--keep-going runs them all)")
            break
    return results


def _line(n: int, r: TrialResult) -> str:
    verdict = "ok" if not r.violations else f"{len(r.violations)} VIOLATIONS"
    return (
        f"trial {n + 1:3d} seed {r.seed}: {r.kills} kills, {r.messages} messages, "
        f"{r.replies} replies, {r.faults} faults, {r.seconds:.1f}s: {verdict}"
    )


def report(results: list[TrialResult], database: str, seconds: float) -> None:
    points: Counter[str] = Counter()
    for r in results:
        points.update(r.kill_points)
    rows = [
        ("database", database),
        ("trials", str(len(results))),
        ("kills delivered (SIGKILL)", str(sum(r.kills for r in results))),
        ("messages in Gmail", str(sum(r.messages for r in results))),
        ("replies sent", str(sum(r.replies for r in results))),
        ("faults injected", str(sum(r.faults for r in results))),
        ("invariant violations", str(sum(len(r.violations) for r in results))),
        ("wall time", f"{seconds:.0f}s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("\nwhere the kills landed:")
    for point, count in points.most_common():
        print(f"  {count:4d}  {point}")
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.logged_errors)
    print("\nerrors the workers logged (rounds that failed and were retried):")
    for event, count in errors.most_common() or [("none", 0)]:
        print(f"  {count:4d}  {event}")
    for r in results:
        for violation in r.violations:
            print(f"seed {r.seed}: {violation}  (logs: {r.logs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="the first trial's seed")
    parser.add_argument("--database", help="a PostgreSQL server URL (default: SQLite files)")
    parser.add_argument("--kills", type=int, default=CAMPAIGN_SIZE.kills, help="per trial")
    parser.add_argument(
        "--send-faults", action="store_true", help="also 5xx on send (15 s retries)"
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and SQLite files")
    parser.add_argument("--keep-going", action="store_true", help="run every trial regardless")
    args = parser.parse_args()
    size = TrialSize(
        conversations=CAMPAIGN_SIZE.conversations,
        arrivals=CAMPAIGN_SIZE.arrivals,
        kills=args.kills,
        send_faults=args.send_faults,
    )
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="crash-campaign-"))
    databases: PostgresScratch | SqliteTemplate
    if args.database:
        databases = PostgresScratch(normalise_database_url(args.database))
    else:
        databases = SqliteTemplate(workdir)
    databases.create()
    try:
        results = asyncio.run(
            campaign(args.trials, args.seed, databases, size, workdir, keep_going=args.keep_going)
        )
    finally:
        if isinstance(databases, PostgresScratch):
            databases.drop()
    report(results, "PostgreSQL" if args.database else "SQLite", time.monotonic() - started)
    if args.keep or any(r.violations for r in results):
        print(f"logs and databases kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if any(r.violations for r in results) else 0)


if __name__ == "__main__":
    main()
