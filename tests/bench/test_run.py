"""The runner's table from each benchmark's JSON (hand-made here: the benchmarks are too slow
for the suite), and a benchmark that fails becoming a row rather than ending the run."""

from __future__ import annotations

from pathlib import Path

from bench.run import (
    Benchmark,
    Row,
    Target,
    format_table,
    read_board,
    read_ingest,
    read_reasoning,
    read_sending,
    run,
)

BOARD = {
    "rows": [
        {"name": "GET /board", "concurrency": 8, "requests": 500, "median_ms": 183.2,
         "p99_ms": 334.1, "rate": 40.0, "server_cpu_ms": 20.1, "target_ms": 150.0, "met": False},
        {"name": "GET /board", "concurrency": 1, "requests": 500, "median_ms": 36.0,
         "p99_ms": 139.0, "rate": 26.0, "server_cpu_ms": 19.0, "target_ms": 150.0, "met": True},
        {"name": "GET /board?q=refund", "concurrency": 1, "requests": 50, "median_ms": 552.0,
         "p99_ms": 649.0, "rate": 2.0, "server_cpu_ms": 90.0, "target_ms": None, "met": None},
    ],
    "server_peak_rss_mib": 181.4,
    "seed_seconds": 11.2,
}  # fmt: skip


def _lines(rows: list[Row]) -> dict[str, list[str]]:
    """Each table line by its benchmark name, split into its columns."""
    return {line.split("  ")[0].strip(): line.split() for line in format_table(rows).splitlines()}


def test_board_rows_carry_their_target_verdict_and_the_servers_peak() -> None:
    rows = read_board(100_000)(BOARD, 0.0)
    assert [(r.figure, r.target, r.met, r.peak_mib) for r in rows] == [
        (334.1, Target(150.0, at_least=False), False, 181.4),
        (139.0, Target(150.0, at_least=False), True, 181.4),
        (649.0, None, None, 181.4),
    ]
    table = format_table(rows)
    assert "GET /board x8 (100,000 tickets)" in table
    [searched] = [line for line in table.splitlines() if "q=refund" in line]
    assert searched.split()[-6:] == ["649", "ms", "p99", "-", "-", "181"]
    [busy] = [line for line in table.splitlines() if "x8" in line]
    assert busy.split()[-7:] == ["334", "ms", "p99", "<", "150", "NO", "181"]


def test_throughput_rows_are_judged_against_at_least_their_target() -> None:
    ingest = {"runs": [{"messages_per_second": 585, "peak_rss_mib": 140}]}
    slow = {"runs": [{"messages_per_second": 320, "peak_rss_mib": 150}]}
    target = Target(500, at_least=True)
    [fast_row] = read_ingest("ingest, SQLite", target)(ingest, 999.0)
    [slow_row] = read_ingest("ingest, slow", target)(slow, 999.0)
    assert (fast_row.met, fast_row.peak_mib) == (True, 140)  # its own sampled peak, not wait4's
    assert slow_row.met is False
    [sends] = read_sending("sending, SQLite")({"runs": [{"sends_per_second": 9.3,
                                                        "peak_rss_mib": 110}]}, 0.0)  # fmt: skip
    assert (sends.figure, sends.unit, sends.target, sends.met) == (9.3, "sends/s", None, None)
    lines = _lines([fast_row, slow_row, sends])
    assert lines["ingest, SQLite"][-6:] == ["585", "msg/s", ">=", "500", "yes", "140"]
    assert lines["ingest, slow"][-4:] == [">=", "500", "NO", "150"]
    assert lines["sending, SQLite"][-5:] == ["9.3", "sends/s", "-", "-", "110"]


def test_reasoning_falls_back_on_the_processs_own_peak() -> None:
    figures = {
        "adapter": {"n": 2000, "tickets_per_second": 1230.4},
        "pipeline": {"n": 1000, "tickets_per_second": 38.2},
    }
    adapter, pipeline = read_reasoning(figures, 97.5)
    assert (adapter.figure, adapter.met, adapter.peak_mib) == (1230.4, True, 97.5)
    assert (pipeline.figure, pipeline.met) == (38.2, None)
    assert read_reasoning({**figures, "peak_rss_mib": 90}, 97.5)[0].peak_mib == 90


def test_a_failed_benchmark_is_a_row_with_its_reason() -> None:
    rows = [
        Row("a much longer benchmark name that failed", failure="unrecognized arguments: --json"),
        Row("ingest", 585.0, "msg/s", Target(500, at_least=True), True, 140.0),
    ]
    table = format_table(rows).splitlines()
    assert table[0].split()[0] == "benchmark"
    assert set(table[1]) == {"-"}
    assert table[2].endswith("failed: unrecognized arguments: --json")
    assert table[3].startswith("ingest ")


def test_a_benchmark_that_exits_with_an_error_becomes_a_failed_row(tmp_path: Path) -> None:
    # The runner itself stands in for a benchmark that does not know --json (argparse, status 2).
    refusing = Benchmark("refusing", "bench.run", ("--only", "nothing"), read_reasoning)
    [failed] = run(refusing, tmp_path, timeout=60)
    assert failed.failure is not None
    assert "unrecognized arguments: --json" in failed.failure
