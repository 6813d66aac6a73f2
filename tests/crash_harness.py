"""Crash anywhere: `commagent worker` syncing and sending against the loopback Gmail server,
killed with SIGKILL at seeded random points and restarted; then the invariants of
`tests.crash_invariants` are checked. Used by the suite (a few trials) and by
`bench/crash_campaign.py` (many).

One trial:
1. A fresh database and Gmail server, a connected Gmail mailbox, an inbox of conversations and a
   few provider faults armed (`tests.crash_world`).
2. `kills` lives of the worker, each ended by SIGKILL: at the N-th request the Gmail server sees
   (of any kind, or of one kind: a sent reply just stored, a batch download, a history page),
   from the server's thread before it answers, so the kill lands inside that step; or after a
   random delay once the worker is up. Meanwhile the operator answers and mail keeps arriving.
3. A last life runs until every message is stored and every approved reply sent, and stops on
   SIGTERM. The seed fixes the mail, the faults and the kill points; each trial is independent.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL

from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.models.base import utcnow
from tests import crash_invariants
from tests.crash_world import SupportWorld, TrialSize
from tests.gmail_server import GmailTestServer
from tests.live_server import COMMAGENT, cli_environment

TICK = 0.15  # how often the operator looks at the board while a worker runs
FALLBACK_KILL = 10.0  # seconds after start-up: a kill aimed at a request that never came
DELAYED_KILL = 3.0  # at most this long after start-up, for kills by delay
# Where kills aim: (Gmail route, or None for any request; the highest N; weight). A reply
# Gmail accepted but we have not recorded is the case that could send twice: aimed at often.
KILL_AIMS = [
    (None, 60, 3),
    ("messages.send.accepted", 3, 2),
    ("messages.send", 3, 1),
    ("batch", 4, 1),
    ("history.list", 3, 1),
]
DELAY_WEIGHT = 4


@dataclass
class TrialResult:
    seed: int
    kills: int = 0
    kill_points: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    replies: int = 0
    faults: int = 0
    logged_errors: Counter[str] = field(default_factory=Counter)  # worker log events, by name
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    logs: Path | None = None


async def run_trial(
    seed: int, database_url: URL, workdir: Path, *, secret_key: str, size: TrialSize
) -> TrialResult:
    """One trial on a clean, migrated database (see the module docstring)."""
    engine = create_engine(database_url)
    started = time.monotonic()
    result = TrialResult(seed=seed, logs=workdir)
    try:
        with GmailTestServer() as gmail:
            rng = random.Random(seed)
            world = SupportWorld(rng, gmail, create_sessionmaker(engine), size)
            await world.prepare(secret_key)
            env = _worker_environment(database_url, secret_key, workdir, gmail)
            lives = _Lives(rng, gmail, world, workdir, result)
            for life in range(size.kills):
                await lives.ending_in_a_kill(env, life)
            await lives.last(env)
            async with world.sessionmaker() as session:
                result.violations += await crash_invariants.check(session, gmail, world.expected)
            held = gmail.state.snapshot()
            result.messages = len(held)
            result.replies = sum("SENT" in m.labels for m in held)
            result.faults = gmail.state.faults_delivered
    finally:
        await engine.dispose()
    result.seconds = time.monotonic() - started
    return result


def _worker_environment(
    database_url: URL, secret_key: str, workdir: Path, gmail: GmailTestServer
) -> dict[str, str]:
    """A quick worker: short leases and intervals, small pages (more pages, more kill points),
    no triage (its model calls would only slow the trial down)."""
    return cli_environment(
        database_url=database_url.render_as_string(hide_password=False),
        secret_key=secret_key,
        data_dir=str(workdir / "data"),
        sync_lease_seconds="1",
        sender_interval_seconds="0.2",
        sender_lease_seconds="5",
        reasoning_enabled="false",
        gmail_page_size="4",
        **gmail.client_settings(),
    )


class _Lives:
    """The worker's lives in one trial: started, killed (or at last stopped), logs read."""

    def __init__(
        self,
        rng: random.Random,
        gmail: GmailTestServer,
        world: SupportWorld,
        workdir: Path,
        result: TrialResult,
    ) -> None:
        self.rng = rng
        self.gmail = gmail
        self.world = world
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.result = result

    def start(self, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [COMMAGENT, "worker", "--interval", "0.3"], env=env, stdout=log, stderr=log
        )

    async def ending_in_a_kill(self, env: dict[str, str], life: int) -> None:
        arrivals = self.world.size.arrivals
        log_path = self.workdir / f"worker-{life}.log"
        with log_path.open("wb") as log:
            worker = self.start(env, log)
            killer = self.killer(worker)
            while worker.poll() is None and not killer.kill_if_due():
                await self.world.operate()
                if arrivals and self.rng.random() < 0.1:
                    self.world.arrive()
                    arrivals -= 1
                await asyncio.sleep(TICK)
            code = worker.wait()
            killer.disarm()
        self.read_errors(log_path)
        if killer.point is None:
            self.result.violations.append(f"life {life}: the worker exited by itself ({code})")
        else:
            self.result.kills += 1
            self.result.kill_points[killer.point] += 1
        for _ in range(arrivals):
            self.world.arrive()
        self.world.arm_faults()

    def killer(self, worker: subprocess.Popen[bytes]) -> _Killer:
        weights = [weight for _route, _n, weight in KILL_AIMS] + [DELAY_WEIGHT]
        aim = self.rng.choices([*KILL_AIMS, None], weights=weights)[0]
        if aim is None:
            return _Killer(worker, self.gmail, after=self.rng.uniform(0.0, DELAYED_KILL))
        route, highest, _weight = aim
        return _Killer(
            worker, self.gmail, route=route, at_request=self.rng.randint(1, highest),
            after=FALLBACK_KILL,
        )  # fmt: skip

    async def last(self, env: dict[str, str]) -> None:
        """Run until everything is stored and sent and this worker has completed a sync of its
        own (plus a second: nothing more may happen), then stop it as a supervisor would."""
        log_path = self.workdir / "worker-last.log"
        size = self.world.size
        with log_path.open("wb") as log:
            started = utcnow()
            worker = self.start(env, log)
            deadline = time.monotonic() + size.final_seconds
            try:
                while time.monotonic() < deadline and worker.poll() is None:
                    await self.world.operate()
                    if await self.world.synced_since(started) and await self.world.settled():
                        await asyncio.sleep(1.0)
                        break
                    await asyncio.sleep(TICK)
            finally:
                code = _stop(worker)
        self.read_errors(log_path)
        if code != 0:
            self.result.violations.append(f"the last worker ended with status {code}")
        if not await self.world.settled():
            self.result.violations.append(
                f"not settled after {size.final_seconds:.0f}s (logs in {self.workdir})"
            )

    def read_errors(self, log: Path) -> None:
        """Errors a worker logged: not violations in themselves (a round may fail and be
        retried), but worth a look when they appear."""
        for line in log.read_bytes().splitlines():
            if line.startswith(b"{"):
                entry = json.loads(line)
                if entry.get("level") in ("error", "critical"):
                    self.result.logged_errors[str(entry.get("event"))] += 1


def _stop(worker: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, as a supervisor stops a worker; None if it would not stop (then SIGKILL)."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return None


class _Killer:
    """SIGKILL for one worker: from the Gmail server's thread at its N-th request (of `route`,
    or of any kind), or a delay after its first request (it is up by then: no kill is wasted
    on start-up). An aimed kill whose request never comes falls back to the delay."""

    def __init__(
        self,
        worker: subprocess.Popen[bytes],
        gmail: GmailTestServer,
        *,
        route: str | None = None,
        at_request: int | None = None,
        after: float,
    ) -> None:
        self.worker = worker
        self.gmail = gmail
        self.after = after
        self.fallback = "" if at_request is None else f" ({route or 'request'} never came)"
        self.point: str | None = None
        self.seen = 0
        self.first_request: float | None = None

        def observe(seen_route: str) -> None:
            if self.first_request is None:
                self.first_request = time.monotonic()
            if route is None or seen_route == route:
                self.seen += 1
                if self.seen == at_request:
                    self.now(f"at Gmail request {seen_route}")

        gmail.on_request = observe

    def kill_if_due(self) -> bool:
        started = self.first_request
        if started is None or time.monotonic() - started < self.after:
            return False
        self.now(f"after a delay{self.fallback}")
        return True

    def now(self, point: str) -> None:
        if self.point is None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.point = point

    def disarm(self) -> None:
        self.gmail.on_request = None
