"""Console board and ticket list benchmark: 100,000 tickets on PostgreSQL, the real server.

    .venv/bin/python -m bench.board                       # 100,000 tickets, 1, 2, 4, 8 clients
    .venv/bin/python -m bench.board --tickets 20000 --requests 200 --concurrency 8 --keep
    .venv/bin/python -m bench.board --database commagent_bench_1a2b3c4d --only board

Seeds a scratch database (see `bench/ticket_mix.py`), starts `commagent serve` in its own
process, signs in through the login form (session cookie) and issues an API token, then times
each endpoint from concurrent clients (one keep-alive connection each, no pause between
requests; see `Connection`): median and p99 of client-side latency, requests/second, the server's
CPU per request and its peak resident set (VmHWM, or the sampled sum over its workers).
Targets (issue 6, 2-core machine): board p99 < 150 ms, ticket list p99 < 50 ms. Filtered and
searched boards and the searched list have no target; they are reported as measured.
The clients run in this process, so on two cores they share the CPU with the server and
PostgreSQL. Each client sends its next request the moment the last one is answered, so N
clients are N requests always in flight: one client shows the cost of a request on an idle
server, and from about four on the two cores are saturated and latency is mostly queueing
(about clients / throughput). The summary says, for each target, up to how many clients it
holds and at what rate. (For scale: an operator's board refreshes itself every 20 s.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import URL

from bench.scratch_database import POSTGRES_SERVER, admin
from bench.ticket_mix import ADMIN, PASSWORD, issue_token, seed
from communication_agent.core.config import normalise_database_url
from tests.live_server import COMMAGENT, cli_environment, free_port

SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 (a throwaway benchmark key)
SEARCH = "refund"  # in about one ticket in nine: a search that finds a lot
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    auth: str  # "cookie" or "token"
    target_ms: float | None
    share: float = 1.0  # of --requests (the slow, untargeted board search gets fewer)


@dataclass(frozen=True)
class Credentials:
    cookie: str  # the console's session cookie
    token: str  # an API bearer token

    def header(self, auth: str) -> str:
        if auth == "cookie":
            return f"Cookie: ca_session={self.cookie}"
        return f"Authorization: Bearer {self.token}"


class Connection:
    """One keep-alive HTTP/1.1 connection that sends ready-made GETs and reads the answers.

    The load generator shares two cores with the server and PostgreSQL, so its own cost per
    request is part of what it measures. httpx spends 2-3 ms of CPU on a request; this spends a
    tenth of that, leaving the cores to the server. It reads `Content-Length` bodies only, which
    is what the server sends for these pages; anything else is an error, not a guess.
    """

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()

    async def get(self, request: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        if "content-length" not in headers:
            raise RuntimeError(f"no Content-Length in the answer: {headers}")
        body = await self.reader.readexactly(int(headers["content-length"]))
        return status, body


def request_bytes(base_url: str, path: str, credential_header: str) -> bytes:
    host = base_url.removeprefix("http://")
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{credential_header}\r\n"
        "Accept: text/html,application/json\r\n\r\n"
    ).encode()


@dataclass
class Result:
    endpoint: Endpoint
    concurrency: int
    latencies: list[float]
    seconds: float
    server_cpu: float = 0.0  # seconds, all server processes

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99(self) -> float:
        """Nearest rank: the value 99% of requests were at or under."""
        ordered = sorted(self.latencies)
        return ordered[math.ceil(0.99 * len(ordered)) - 1] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def met(self) -> str:
        if self.endpoint.target_ms is None:
            return "-"
        return "yes" if self.p99 < self.endpoint.target_ms else "NO"


# --- the server, its memory and its CPU ------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:  # the process has just exited
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers, with --workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


class Server:
    """`commagent serve` in its own process; `peak_rss_kib` covers it and its workers."""

    def __init__(self, url: URL, workers: int, log: Path) -> None:
        self.base_url = f"http://127.0.0.1:{free_port()}"
        env = cli_environment(
            database_url=url.render_as_string(hide_password=False),
            secret_key=SECRET,
            reasoning_enabled="false",
            log_level="WARNING",
            data_dir=str(log.parent),
        )
        self.log = log
        self._log_file = log.open("w")
        port = self.base_url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(  # noqa: S603
            [COMMAGENT, "serve", "--port", port, "--workers", str(workers)],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.peak_rss_kib = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self._sampler.start()

    def rss_kib(self) -> int:
        return sum(_status_kib(pid, "VmRSS") for pid in _tree(self.process.pid))

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in _tree(self.process.pid))

    def _sample(self) -> None:
        while self._sampling and self.process.poll() is None:
            self.peak_rss_kib = max(self.peak_rss_kib, self.rss_kib())
            time.sleep(0.05)

    def stop(self) -> None:
        pids = _tree(self.process.pid)
        if len(pids) == 1:  # the kernel's own high-water mark misses nothing between samples
            self.peak_rss_kib = max(self.peak_rss_kib, _status_kib(pids[0], "VmHWM"))
        self._sampling = False
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


# --- clients -----------------------------------------------------------------------------------


async def sign_in(base_url: str) -> str:
    """The session cookie, obtained as a browser does: the form, its CSRF token, the post."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        form = await client.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found, "no csrf_token field on the sign-in form"
        answer = await client.post(
            "/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": found.group(1)}
        )
        assert answer.status_code == 303, answer.text
        return answer.cookies["ca_session"]


async def timed_run(
    base_url: str, credentials: Credentials, endpoint: Endpoint, requests: int, clients: int
) -> Result:
    """`requests` GETs shared among `clients` concurrent clients, each timed on its own."""
    remaining = requests
    latencies: list[float] = []
    request = request_bytes(base_url, endpoint.path, credentials.header(endpoint.auth))

    async def client_loop() -> None:
        nonlocal remaining
        async with Connection(base_url) as connection:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status, body = await connection.get(request)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"{endpoint.path}: {status} {body[:500]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return Result(endpoint, clients, latencies, time.perf_counter() - started)


async def endpoints(base_url: str, credentials: Credentials) -> list[Endpoint]:
    headers = {"Authorization": f"Bearer {credentials.token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        first = (await client.get("/api/v1/tickets")).json()
    assert len(first["items"]) == 50, first
    assert first["next_cursor"], first
    api = "/api/v1/tickets"
    return [
        Endpoint("GET /board", "/board", "cookie", 150),
        Endpoint("GET /board?priority=high", "/board?priority=high", "cookie", None),
        Endpoint(f"GET /board?q={SEARCH}", f"/board?q={SEARCH}", "cookie", None, 0.1),
        Endpoint(f"GET {api}", api, "token", 50),
        Endpoint(f"GET {api}?state=NEW", f"{api}?state=NEW", "token", 50),
        Endpoint(
            f"GET {api}?state=NEEDS_ACTION&assignee=none",
            f"{api}?state=NEEDS_ACTION&assignee=none",
            "token",
            50,
        ),
        Endpoint(
            f"GET {api}?priority=urgent&sort=-updated_at",
            f"{api}?priority=urgent&sort=-updated_at",
            "token",
            50,
        ),
        Endpoint(f"GET {api} (page 2)", f"{api}?cursor={first['next_cursor']}", "token", 50),
        Endpoint(f"GET {api}?q={SEARCH}", f"{api}?q={SEARCH}", "token", None),
    ]


async def measure_all(
    server: Server, token: str, requests: int, concurrencies: Sequence[int], only: Sequence[str]
) -> list[Result]:
    credentials = Credentials(await sign_in(server.base_url), token)
    results = []
    for endpoint in await endpoints(server.base_url, credentials):
        if only and not any(word in endpoint.name for word in only):
            continue
        for clients in concurrencies:
            count = max(clients * 10, int(requests * endpoint.share))
            await timed_run(server.base_url, credentials, endpoint, clients * 5, clients)  # warm
            cpu_before = server.cpu_seconds()
            result = await timed_run(server.base_url, credentials, endpoint, count, clients)
            result.server_cpu = server.cpu_seconds() - cpu_before
            print(
                f"  {endpoint.name} x{clients}: {result.median:.1f} ms median, "
                f"{result.p99:.1f} ms p99, {result.rate:.0f}/s, "
                f"server CPU {1000 * result.server_cpu / count:.1f} ms a request"
            )
            results.append(result)
    return results


# --- the run -----------------------------------------------------------------------------------


def report(results: list[Result], seed_seconds: float | None, server: Server) -> None:
    line = "{:<52} {:>8} {:>5} {:>9} {:>8} {:>6} {:>8} {:>7} {:>5}"
    header = ("endpoint", "requests", "conc.", "median ms", "p99 ms", "req/s", "CPU ms", "target")
    print()
    print(line.format(*header, "met?"))
    for r in results:
        target = f"<{r.endpoint.target_ms:.0f} ms" if r.endpoint.target_ms else "-"
        cpu = f"{1000 * r.server_cpu / len(r.latencies):.1f}"
        row = (r.endpoint.name, len(r.latencies), r.concurrency, f"{r.median:.1f}")
        print(line.format(*row, f"{r.p99:.1f}", f"{r.rate:.0f}", cpu, target, r.met))
    print()
    for summary in target_summaries(results):
        print(summary)
    seeded = f"{seed_seconds:.1f} s" if seed_seconds is not None else "(database reused)"
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work skews every figure)")
    print("\nCPU ms: the server's CPU time a request (not PostgreSQL's, not the clients')")
    print(f"seed time: {seeded}; server peak RSS: {server.peak_rss_kib / 1024:.0f} MiB")


def target_summaries(results: list[Result]) -> list[str]:
    """For each endpoint with a target: the most concurrent clients at which its p99 held."""
    lines = []
    for endpoint in dict.fromkeys(r.endpoint for r in results if r.endpoint.target_ms):
        runs = sorted((r for r in results if r.endpoint == endpoint), key=lambda r: r.concurrency)
        held = [r for r in runs if r.met == "yes"]
        if not held:
            verdict = "missed at every concurrency measured"
        else:
            best = held[-1]
            verdict = (
                f"held up to {best.concurrency} client(s): p99 {best.p99:.0f} ms at "
                f"{best.rate:.0f} req/s"
            )
            missed = [r for r in runs if r.met != "yes"]
            if missed:
                verdict += f"; missed from {missed[0].concurrency} (p99 {missed[0].p99:.0f} ms)"
        lines.append(f"{endpoint.name} (p99 < {endpoint.target_ms:.0f} ms): {verdict}")
    return lines


async def prepare(n: int, name: str) -> float:
    await admin(f'CREATE DATABASE "{name}"')
    started = time.perf_counter()
    await seed(normalise_database_url(POSTGRES_SERVER).set(database=name), n)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=100_000, help="default 100,000")
    parser.add_argument("--requests", type=int, default=500, help="per run (default 500)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="clients (1 2 4 8)"
    )
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers` (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", help="measure a database kept by --keep (no seeding)")
    parser.add_argument("--only", nargs="+", default=[], help="endpoints whose name has this")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/run.py)")
    args = parser.parse_args()
    name = args.database or f"commagent_bench_{uuid.uuid4().hex[:8]}"
    url = normalise_database_url(POSTGRES_SERVER).set(database=name)
    server = None
    try:
        seed_seconds = None if args.database else asyncio.run(prepare(args.tickets, name))
        if seed_seconds is not None:
            print(f"seeded {args.tickets:,} tickets into {name} in {seed_seconds:.1f} s")
        token = asyncio.run(issue_token(url))
        server = Server(url, args.workers, Path(tempfile.mkdtemp()) / "server.log")
        server.wait_ready()
        print(f"server up ({args.workers} worker(s)), RSS {server.rss_kib() / 1024:.0f} MiB")
        print(f"load average before measuring: {os.getloadavg()[0]:.2f}")
        results = asyncio.run(
            measure_all(server, token, args.requests, args.concurrency, args.only)
        )
    finally:
        if server is not None:
            server.stop()
        if args.keep or args.database:
            print(f"kept database {name}")
        else:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report(results, seed_seconds, server)
    if args.json:
        write_json(args.json, results, seed_seconds, server)


def write_json(
    path: Path, results: list[Result], seed_seconds: float | None, server: Server
) -> None:
    rows = [
        {
            "name": r.endpoint.name,
            "concurrency": r.concurrency,
            "requests": len(r.latencies),
            "median_ms": round(r.median, 1),
            "p99_ms": round(r.p99, 1),
            "rate": round(r.rate, 1),
            "server_cpu_ms": round(1000 * r.server_cpu / len(r.latencies), 2),
            "target_ms": r.endpoint.target_ms,
            "met": None if r.endpoint.target_ms is None else r.p99 < r.endpoint.target_ms,
        }
        for r in results
    ]
    figures = {
        "rows": rows,
        "server_peak_rss_mib": round(server.peak_rss_kib / 1024, 1),
        "seed_seconds": seed_seconds,
    }
    path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
