"""The benchmark runner (`make bench`): every benchmark in its own process, one table.

    .venv/bin/python -m bench.run                  # full sizes
    .venv/bin/python -m bench.run --quick          # smaller sizes: a few minutes
    .venv/bin/python -m bench.run --only sending   # the rows whose name has this

Runs ingest (SQLite, PostgreSQL), sending through the outbox (SQLite, PostgreSQL), offline
triage and drafting, and the board and ticket list on PostgreSQL, each as
`python -m bench.<module> ... --json FILE`, one after the other (they would skew each other's
figures), and prints one table: benchmark | figure | unit | target | met? | peak memory. A
benchmark that fails, or cannot run, gets a "failed: <reason>" row and the others still run; the
runner then exits with status 1. A missed target is a figure, not a failure.

Peak memory is the peak resident set of the process doing the measured work, as the benchmark
sampled it (ingest: the syncing process; sending: the sending process; board: the server), or
else the benchmark process's own `ru_maxrss` from `os.wait4` (reasoning, set-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
Reader = Callable[[dict[str, Any], float], list["Row"]]  # (its JSON, its ru_maxrss MiB)


@dataclass(frozen=True)
class Target:
    value: float
    at_least: bool  # throughput: at least `value`; latency: under it

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure < self.value

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<'} {self.value:g}"


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: float | None = None
    unit: str = ""
    target: Target | None = None
    met: bool | None = None
    peak_mib: float | None = None
    failure: str | None = None


def row(
    benchmark: str,
    figure: float,
    unit: str,
    target: Target | None,
    peak_mib: float | None,
    *,
    met: bool | None = None,
) -> Row:
    """A measured row; `met` is decided from the target unless the benchmark decided it."""
    if met is None and target is not None:
        met = target.met(figure)
    return Row(benchmark, figure, unit, target, met, peak_mib)


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    args: tuple[str, ...]
    read: Reader

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


# --- reading each benchmark's JSON -------------------------------------------------------------


def read_ingest(name: str, target: Target | None) -> Reader:
    def read(figures: dict[str, Any], _child_peak: float) -> list[Row]:
        [run] = figures["runs"]
        return [row(name, run["messages_per_second"], "msg/s", target, run["peak_rss_mib"])]

    return read


def read_sending(name: str) -> Reader:
    def read(figures: dict[str, Any], _child_peak: float) -> list[Row]:
        [run] = figures["runs"]
        return [row(name, run["sends_per_second"], "sends/s", None, run["peak_rss_mib"])]

    return read


def read_reasoning(figures: dict[str, Any], child_peak: float) -> list[Row]:
    peak = figures.get("peak_rss_mib", child_peak)
    adapter, pipeline = figures["adapter"], figures["pipeline"]
    return [
        row(
            f"offline triage + draft, adapter (n={adapter['n']:,})",
            adapter["tickets_per_second"],
            "tickets/s",
            Target(200, at_least=True),
            peak,
        ),
        row(
            f"offline triage + draft, background path, SQLite (n={pipeline['n']:,})",
            pipeline["tickets_per_second"],
            "tickets/s",
            None,
            peak,
        ),
    ]


def read_board(tickets: int) -> Reader:
    def read(figures: dict[str, Any], _child_peak: float) -> list[Row]:
        if not figures["rows"]:
            raise ValueError("no rows")
        peak = figures["server_peak_rss_mib"]
        rows = []
        for r in figures["rows"]:
            target = Target(r["target_ms"], at_least=False) if r["target_ms"] is not None else None
            name = f"{r['name']} x{r['concurrency']} ({tickets:,} tickets)"
            rows.append(row(name, r["p99_ms"], "ms p99", target, peak, met=r["met"]))
        return rows

    return read


def benchmarks(quick: bool) -> list[Benchmark]:
    """Full sizes by default; `quick` cuts every N so the whole run takes a few minutes."""
    messages, replies, tickets = (1000, 200, 500) if quick else (5000, 1000, 2000)
    board_tickets, requests = (20_000, 100) if quick else (100_000, 500)
    ingest_target = Target(500, at_least=True)  # issue 2, SQLite; none stated for PostgreSQL
    return [
        Benchmark(
            f"ingest, SQLite (n={messages:,})",
            "bench.ingest",
            ("--n", str(messages), "--db", "sqlite"),
            read_ingest(f"ingest, SQLite (n={messages:,})", ingest_target),
        ),
        Benchmark(
            f"ingest, PostgreSQL (n={messages:,})",
            "bench.ingest",
            ("--n", str(messages), "--db", "postgresql"),
            read_ingest(f"ingest, PostgreSQL (n={messages:,})", None),
        ),
        Benchmark(
            f"sending, SQLite (n={replies:,})",
            "bench.sending",
            ("--n", str(replies), "--db", "sqlite"),
            read_sending(f"sending, SQLite (n={replies:,})"),
        ),
        Benchmark(
            f"sending, PostgreSQL (n={replies:,})",
            "bench.sending",
            ("--n", str(replies), "--db", "postgres"),
            read_sending(f"sending, PostgreSQL (n={replies:,})"),
        ),
        Benchmark(
            "offline triage + draft", "bench.reasoning", ("--n", str(tickets)), read_reasoning
        ),
        Benchmark(
            f"board and ticket list ({board_tickets:,} tickets)",
            "bench.board",
            ("--tickets", str(board_tickets), "--requests", str(requests)),
            read_board(board_tickets),
        ),
    ]


# --- running one -------------------------------------------------------------------------------


def run(benchmark: Benchmark, directory: Path, timeout: float) -> list[Row]:
    """Run it with `--json` into `directory`; its rows, or one failed row saying why."""
    slug = "".join(c if c.isalnum() else "-" for c in benchmark.name)
    figures_path, log_path = directory / f"{slug}.json", directory / f"{slug}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603
            [*benchmark.command(), "--json", str(figures_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # its own group: a timeout ends its servers too
        )
        status, usage = _wait(process, timeout)
    if isinstance(status, str):
        return [_failed(benchmark.name, status, log_path)]
    if status != 0:
        return [_failed(benchmark.name, _last_line(log_path) or f"exit status {status}", log_path)]
    try:
        figures = json.loads(figures_path.read_text())
        return benchmark.read(figures, usage.ru_maxrss / 1024)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [_failed(benchmark.name, f"unreadable figures ({type(exc).__name__}: {exc})")]


def _wait(process: subprocess.Popen[bytes], timeout: float) -> tuple[int | str, Any]:
    """Reap the child with `os.wait4`, for its own rusage (`ru_maxrss`, KiB). After `timeout`
    seconds its process group is asked to end, then killed; the status is then "timed out"."""
    deadline, ending = time.monotonic() + timeout, [signal.SIGTERM, signal.SIGKILL]
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline and ending:
            os.killpg(process.pid, ending.pop(0))
            deadline = time.monotonic() + 10
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    if len(ending) < 2:
        return f"timed out after {timeout:.0f} s", usage
    return process.returncode, usage


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


def _failed(name: str, reason: str, log: Path | None = None) -> Row:
    if log is not None:  # the log goes with the temporary directory: show its end now
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join(f"    | {line}" for line in tail), flush=True)
    return Row(name, failure=reason)


# --- the table ---------------------------------------------------------------------------------

HEADER = ("benchmark", "figure", "unit", "target", "met?", "peak memory (MiB)")


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    cells: list[tuple[str, ...]] = []
    for r in rows:
        if r.failure is not None or r.figure is None:
            cells.append((r.benchmark, f"failed: {r.failure}"))
            continue
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:,.0f}"
        target = "-" if r.target is None else str(r.target)
        cells.append((r.benchmark, _figure(r.figure), r.unit, target, met, peak))
    measured = [c for c in cells if len(c) == len(HEADER)]
    widths = [max(len(c[i]) for c in [HEADER, *measured]) for i in range(len(HEADER))]
    widths[0] = max(len(c[0]) for c in [HEADER, *cells])
    lines = []
    for c in [HEADER, *cells]:
        if len(c) < len(HEADER):  # a failure: its reason across the other columns
            lines.append(f"{c[0]:<{widths[0]}}  {c[1]}")
            continue
        name, figure, unit, target, met, peak = c
        w = widths
        lines.append(
            f"{name:<{w[0]}}  {figure:>{w[1]}}  {unit:<{w[2]}}  {target:<{w[3]}}  {met:<{w[4]}}  "
            f"{peak:>{w[5]}}"
        )
    lines.insert(1, "-" * len(lines[0].rstrip()))
    return "\n".join(line.rstrip() for line in lines)


def _rerun(benchmark: Benchmark) -> str:
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return shlex.join([str(shown), "-m", benchmark.module, *benchmark.args])


def footer(chosen: Sequence[Benchmark], load_before: tuple[float, ...], started: datetime) -> str:
    load = " / ".join(f"{x:.2f}" for x in load_before)
    after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    width = max(len(b.name) for b in chosen)
    return "\n".join(
        [
            f"machine: {len(os.sched_getaffinity(0))} cores (nproc); load average (1/5/15 min) "
            f"{load} before, {after} after; other work on it skews every figure",
            f"date: {started:%Y-%m-%d %H:%M %Z}; the run took "
            f"{(datetime.now(UTC) - started).total_seconds() / 60:.0f} minutes",
            "peak memory: the measuring process's peak RSS (ingest: the syncing process; "
            "sending: the sending process; board: the server; reasoning: its whole process)",
            "rerun one row (the runner adds --json FILE):",
            *(f"  {b.name:<{width}}  {_rerun(b)}" for b in chosen),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N everywhere")
    parser.add_argument("--only", nargs="+", default=[], help="benchmarks whose name has this")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    chosen = [
        b
        for b in benchmarks(args.quick)
        if not args.only or any(word.lower() in b.name.lower() for word in args.only)
    ]
    if not chosen:
        raise SystemExit(f"no benchmark matches {args.only}")
    load_before, started = os.getloadavg(), datetime.now(UTC)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="commagent-bench-run-") as directory:
        for i, benchmark in enumerate(chosen, 1):
            print(f"[{i}/{len(chosen)}] {benchmark.name}: {_rerun(benchmark)}", flush=True)
            began = time.monotonic()
            found = run(benchmark, Path(directory), args.timeout)
            print(f"      {time.monotonic() - began:.0f} s", flush=True)
            rows += found
    print()
    print(format_table(rows))
    print()
    print(footer(chosen, load_before, started))
    if any(r.failure is not None for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
